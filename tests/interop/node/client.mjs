// A client in another language, built from the .proto files alone, with grpc-js's default channel
// settings (so every message must stay under its 4 MiB receive limit): submit a job, watch it to
// the end, then download the video through the Download RPC, resuming after a broken stream, and
// check its size and sha256 against the result and the download's header.
//
//   node client.mjs --target HOST:PORT[,HOST:PORT...] --image IN.png --out OUT.mp4 \
//        [--width 512 --height 512 --frames 32 --steps 1 --seed 7 --fps 8 --request-id ID]
//   node client.mjs --target ... --download JOB_ID --out OUT.mp4      (download only)
//
// --window BYTES sets grpc-js's HTTP/2 flow-control window (benchmarks only: its default, 64 KiB,
// holds a stream back on a fast link); every other setting stays at its default.
//
// Prints one JSON line: what was downloaded and how fast. Exits 1 with the reason on any failure.

import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const PROTO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "proto");
const LEADER_ADDR = "i2v-leader-addr";
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);
const GIVE_UP_MS = 30_000;

const definition = protoLoader.loadSync("i2v_proto/v1/coordinator.proto", {
  includeDirs: [PROTO_ROOT],
  keepCase: true, // field names as in the .proto files
  longs: Number, // sizes and offsets stay far below 2^53
  enums: String,
  defaults: true,
});
const { Coordinator } = grpc.loadPackageDefinition(definition).i2v.v1;

class Targets {
  // The coordinators and which one to call; a standby's UNAVAILABLE names the leader.
  constructor(list, options) {
    this.list = list;
    this.options = options;
    this.current = 0;
    this.clients = new Map();
  }

  client() {
    const target = this.list[this.current];
    if (!this.clients.has(target)) {
      // grpc-js's defaults (a 4 MiB receive limit among them), unless --window was given.
      this.clients.set(target, new Coordinator(target, grpc.credentials.createInsecure(), this.options));
    }
    return this.clients.get(target);
  }

  moveOn(err) {
    const hint = err.metadata?.get(LEADER_ADDR)?.[0]?.toString() ?? "";
    if (hint && !this.list.includes(hint)) this.list.push(hint);
    this.current = hint ? this.list.indexOf(hint) : (this.current + 1) % this.list.length;
  }

  close() {
    for (const client of this.clients.values()) client.close();
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function retrying(targets, what, attempt) {
  // `attempt(client)` on the current coordinator, moving on after UNAVAILABLE or a deadline.
  const started = Date.now();
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    try {
      return await attempt(targets.client());
    } catch (err) {
      if (!RETRYABLE.has(err.code) || Date.now() - started > GIVE_UP_MS) {
        throw new Error(`${what}: ${grpc.status[err.code] ?? err.code}: ${err.details ?? err.message}`);
      }
      const hinted = Boolean(err.metadata?.get(LEADER_ADDR)?.length);
      targets.moveOn(err);
      if (!hinted) await sleep(delay);
    }
  }
}

function submit(targets, request, requestId) {
  return retrying(targets, "submit", (client) =>
    new Promise((resolve, reject) => {
      client.Submit({ request, request_id: requestId }, { deadline: Date.now() + 30_000 }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    }),
  );
}

function watch(targets, jobId) {
  // The final event: the stream is re-opened by job id after a break.
  return retrying(targets, `watch ${jobId}`, (client) =>
    new Promise((resolve, reject) => {
      const call = client.Watch({ job_id: jobId });
      let final = null;
      call.on("data", (event) => {
        if (/(SUCCEEDED|FAILED|CANCELLED)$/.test(event.state)) {
          final = event;
          call.cancel();
        }
      });
      call.on("error", (err) => (final ? resolve(final) : reject(err)));
      call.on("end", () =>
        final ? resolve(final) : reject({ code: grpc.status.UNAVAILABLE, details: "stream ended early" }),
      );
    }),
  );
}

function downloadFrom(client, jobId, offset, sink) {
  // One Download stream from `offset`: the header first, then pieces, each written as it comes.
  return new Promise((resolve, reject) => {
    const call = client.Download({ job_id: jobId, what: "ARTIFACT_VIDEO", offset });
    let first = true;
    call.on("data", (message) => {
      if (first) {
        first = false;
        try {
          sink.header(message);
        } catch (err) {
          call.cancel();
          reject(err);
        }
        return;
      }
      if (message.offset !== sink.have) {
        call.cancel();
        reject(new Error(`piece at ${message.offset}, expected ${sink.have}`));
        return;
      }
      sink.write(message.data);
    });
    call.on("error", reject);
    call.on("end", resolve);
  });
}

async function download(targets, jobId, out) {
  const fd = openSync(out, "w");
  const hash = createHash("sha256");
  const sink = {
    have: 0,
    total: null,
    sha256: "",
    mime: "",
    streams: 0,
    largest: 0,
    header(h) {
      if (this.total !== null && (h.total_size !== this.total || h.sha256 !== this.sha256)) {
        throw new Error("the artifact changed between streams");
      }
      [this.total, this.sha256, this.mime] = [h.total_size, h.sha256, h.mime_type];
    },
    write(data) {
      writeSync(fd, data);
      hash.update(data);
      this.have += data.length;
      this.largest = Math.max(this.largest, data.length);
    },
  };
  const started = process.hrtime.bigint();
  try {
    while (sink.total === null || sink.have < sink.total) {
      if (sink.streams >= 100) throw new Error(`download ${jobId}: 100 streams and still short`);
      await retrying(targets, `download ${jobId}`, (client) => {
        sink.streams += 1;
        return downloadFrom(client, jobId, sink.have, sink);
      });
    }
  } finally {
    closeSync(fd);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const digest = hash.digest("hex");
  if (digest !== sink.sha256) throw new Error(`sha256 ${digest} does not match the header's ${sink.sha256}`);
  return { size: sink.have, sha256: digest, mime_type: sink.mime, streams: sink.streams, seconds, largest_piece: sink.largest };
}

async function main() {
  const { values: a } = parseArgs({
    options: {
      target: { type: "string" },
      image: { type: "string" },
      out: { type: "string" },
      download: { type: "string" },
      "request-id": { type: "string", default: `node-${process.pid}-${Date.now()}` },
      width: { type: "string", default: "512" },
      height: { type: "string", default: "512" },
      frames: { type: "string", default: "32" },
      steps: { type: "string", default: "1" },
      fps: { type: "string", default: "8" },
      seed: { type: "string", default: "7" },
      window: { type: "string" },
    },
  });
  if (!a.target || !a.out || !(a.image || a.download)) {
    throw new Error("usage: --target HOST:PORT[,...] --out OUT (--image IN.png | --download JOB_ID)");
  }
  const options = a.window ? { "grpc-node.flow_control_window": Number(a.window) } : {};
  const targets = new Targets(a.target.split(",").filter(Boolean), options);
  try {
    let jobId = a.download;
    let result = null;
    if (!jobId) {
      const request = {
        image: readFileSync(a.image),
        prompt: "a red fox running through snow",
        width: Number(a.width),
        height: Number(a.height),
        frames: Number(a.frames),
        steps: Number(a.steps),
        fps: Number(a.fps),
        seed: Number(a.seed),
      };
      jobId = (await submit(targets, request, a["request-id"])).job_id;
      const final = await watch(targets, jobId);
      if (!final.state.endsWith("SUCCEEDED")) throw new Error(`job ${jobId} ended ${final.state}: ${final.error}`);
      result = final.result;
    }
    const got = await download(targets, jobId, a.out);
    if (result && (got.size !== result.video_size || got.sha256 !== result.sha256)) {
      throw new Error(`downloaded ${got.size} bytes ${got.sha256}, the result says ${result.video_size} ${result.sha256}`);
    }
    const mib_per_s = got.size / 1048576 / got.seconds;
    console.log(JSON.stringify({ job_id: jobId, ...got, mib_per_s, result_video_size: result?.video_size ?? null }));
  } finally {
    targets.close();
  }
}

main().catch((err) => {
  console.error(`error: ${err.message ?? err}`);
  process.exit(1);
});
