"""The engine on the tiny real I2VGen-XL pipeline: progress, cancel, determinism, OOM recovery,
profile switching. Runs are 64x64, 8 frames, a few steps: about 0.3 s each on one CPU thread."""

import os
import threading
import types
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from i2v_contract.profiles import PROFILES, profile_by_name
from i2v_contract.wire import common_pb2 as pb
from i2v_node.engine import Engine, EngineConfig, parse_fault_plan
from i2v_node.job import Cancelled, JobSpec, OutOfMemoryExhausted, ProgressEvent
from i2v_node.prompt import encode_prompts

pytestmark = pytest.mark.integration

STEPS = 5
FAST, CHUNKED = profile_by_name("fast"), profile_by_name("chunked")


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Two shared cores: one torch thread avoids oversubscription stalls (10-50x slower otherwise).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path_factory.mktemp("i2v-cache")
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def make_engine(tiny_cache):
    def make(plan: str | None = None) -> Engine:
        fault_plan = parse_fault_plan(plan) if plan else None
        return Engine.load(
            EngineConfig(
                model="tiny",
                device="cpu",
                dtype=None,
                cache_dir=tiny_cache,
                offline=True,
                fault_plan=fault_plan,
            )
        )

    return make


@pytest.fixture(scope="session")
def engine(make_engine):
    return make_engine()


def make_spec(**overrides) -> JobSpec:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(80, 96, 3), dtype=np.uint8))
    fields: dict[str, Any] = dict(
        image=image,
        prompt="a red car on a road",
        negative_prompt="",
        width=64,
        height=64,
        frames=8,
        fps=8,
        steps=STEPS,
        guidance_scale=9.0,
        seed=1234,
    )
    fields.update(overrides)
    return JobSpec(**fields)


def run(engine, spec=None, profile=FAST, cancel=None, on_event=None):
    events: list[ProgressEvent] = []

    def record(event: ProgressEvent) -> None:
        events.append(event)
        if on_event:
            on_event(event)

    outcome = engine.run(spec or make_spec(), profile, record, cancel or threading.Event())
    return outcome, events


def step_events(events):
    return [e for e in events if e.stage == pb.STAGE_DENOISE and e.step > 0]


def test_tiny_loads_through_from_pretrained(engine, tiny_cache):
    assert (tiny_cache / "tiny-i2vgen-xl" / "model_index.json").is_file()
    assert engine.model_id == "tiny" and engine.device == "cpu" and engine.dtype_name == "float32"
    assert not engine.has_accelerator
    assert [p.name for p in engine.ladder] == [p.name for p in PROFILES if not p.requires_accelerator]
    assert engine.arch.vae_scale_factor == 8 and engine.arch.total_params > 0


def test_outcome_shape_metadata_and_timings(engine):
    outcome, _ = run(engine)
    assert outcome.frames.shape == (8, 64, 64, 3) and outcome.frames.dtype == np.uint8
    assert outcome.frames.std() > 0
    assert outcome.profile == "fast" and outcome.degradations == ()
    assert set(outcome.timings) == {"encode_s", "denoise_s", "decode_s"}
    assert all(v > 0 for v in outcome.timings.values())
    assert outcome.metadata["seed"] == "1234" and outcome.metadata["dtype"] == "float32"
    assert {"torch", "diffusers", "transformers", "model", "device"} <= set(outcome.metadata)
    assert outcome.peak_bytes >= 0


def test_same_seed_same_frames_other_seed_differs(engine):
    first, _ = run(engine)
    second, _ = run(engine)
    other, _ = run(engine, make_spec(seed=99))
    assert np.array_equal(first.frames, second.frames)
    assert not np.array_equal(first.frames, other.frames)


def test_one_event_per_step_and_stage_order(engine):
    _, events = run(engine, profile=CHUNKED)
    steps = step_events(events)
    assert [e.step for e in steps] == list(range(1, STEPS + 1))
    assert all(e.total_steps == STEPS and e.profile == "chunked" for e in steps)
    starts = [e.stage for e in events if e.step == 0]
    assert starts == [pb.STAGE_ENCODE_PROMPT, pb.STAGE_ENCODE_IMAGE, pb.STAGE_DENOISE, pb.STAGE_DECODE]
    # Every step event sits between the denoise and decode stage events.
    order = [(e.stage, e.step) for e in events]
    assert order.index((pb.STAGE_DENOISE, 0)) < order.index((pb.STAGE_DENOISE, 1))
    assert order.index((pb.STAGE_DENOISE, STEPS)) < order.index((pb.STAGE_DECODE, 0))


def test_cancel_stops_within_one_step(engine):
    cancel = threading.Event()

    events: list[ProgressEvent] = []

    def record(event: ProgressEvent) -> None:
        events.append(event)
        if event.stage == pb.STAGE_DENOISE and event.step == 2:
            cancel.set()

    with pytest.raises(Cancelled, match="after step 2"):
        engine.run(make_spec(), FAST, record, cancel)
    assert [e.step for e in step_events(events)] == [1, 2]
    assert all(e.stage != pb.STAGE_DECODE for e in events)
    # The engine is usable again right after a cancel.
    outcome, _ = run(engine)
    assert outcome.frames.shape[0] == 8


def test_cancel_before_start_runs_nothing(engine):
    cancel = threading.Event()
    cancel.set()
    events: list[ProgressEvent] = []
    with pytest.raises(Cancelled):
        engine.run(make_spec(), FAST, events.append, cancel)
    assert step_events(events) == []


@pytest.mark.parametrize(
    ("stage_text", "stage"),
    [
        ("encode_prompt", pb.STAGE_ENCODE_PROMPT),
        ("encode_image", pb.STAGE_ENCODE_IMAGE),
        ("denoise", pb.STAGE_DENOISE),
        ("decode", pb.STAGE_DECODE),
    ],
)
def test_oom_at_each_stage_retries_leaner(make_engine, engine, stage_text, stage):
    faulty = make_engine(f"{stage_text}:fast")
    outcome, events = run(faulty)
    assert outcome.profile == "chunked" and outcome.degradations == ()
    retries = [e for e in events if e.stage == pb.STAGE_RETRY]
    assert [e.message for e in retries] == [
        f"OOM at {stage_text} with profile fast -> retrying with profile chunked"
    ]
    assert retries[0].profile == "chunked"
    assert outcome.metadata["attempts"] == "2"
    # The failed attempt emitted no step events past the failing stage; the retry did all of them.
    assert [e.step for e in step_events(events)][-STEPS:] == list(range(1, STEPS + 1))
    assert events[events.index(retries[0]) - 1].stage == stage  # failed right as the stage began
    expected, _ = run(engine, profile=CHUNKED)
    assert np.array_equal(outcome.frames, expected.frames)


def test_oom_at_every_profile_is_exhausted_naming_the_stage(make_engine):
    faulty = make_engine("decode:*")
    events: list[ProgressEvent] = []
    with pytest.raises(OutOfMemoryExhausted) as err:
        faulty.run(make_spec(steps=2), FAST, events.append, threading.Event())
    assert err.value.stage == pb.STAGE_DECODE
    text = str(err.value)
    assert "at decode" in text and "64x64, 8 frames" in text and "group_offload_leaf" in text
    assert "allow_degrade" in text and "GiB" in text
    retries = [e for e in events if e.stage == pb.STAGE_RETRY]
    assert len(retries) == len(faulty.ladder) - 1


def test_oom_with_allow_degrade_returns_degraded_result(make_engine):
    faulty = make_engine("denoise:*@64x64")
    leanest = faulty.ladder[-1]
    outcome, events = run(faulty, make_spec(allow_degrade=True), profile=leanest)
    assert outcome.degradations == ("resolution 64x64 -> 48x48",)
    assert (outcome.spec.width, outcome.spec.height, outcome.spec.frames) == (48, 48, 8)
    assert outcome.frames.shape == (8, 48, 48, 3)
    assert outcome.profile == leanest.name
    [retry] = [e for e in events if e.stage == pb.STAGE_RETRY]
    assert "degrading resolution 64x64 -> 48x48" in retry.message


def test_degrade_exhausted_lists_what_was_tried(make_engine):
    faulty = make_engine("encode_image")
    leanest = faulty.ladder[-1]
    with pytest.raises(OutOfMemoryExhausted) as err:
        faulty.run(make_spec(allow_degrade=True), leanest, lambda e: None, threading.Event())
    assert err.value.stage == pb.STAGE_ENCODE_IMAGE
    assert "resolution 64x64 -> 48x48" in str(err.value) and "frames 8 -> 6" in str(err.value)


def test_profile_switching_both_ways(engine):
    """Neutral profiles agree to within one 8-bit level; a round trip through offload profiles
    (rebuilt components) lands on the same frames as before to within the same level."""
    spec = make_spec(steps=3)
    order = [
        "fast",
        "chunked",
        "sliced",
        "tiled",
        "group_offload_block",
        "group_offload_leaf",
        "sliced",
        "fast",
    ]
    results = [run(engine, spec, profile_by_name(name))[0] for name in order]
    base = results[0].frames.astype(int)
    for name, outcome in zip(order, results, strict=True):
        assert outcome.profile == name
        assert np.abs(outcome.frames.astype(int) - base).max() <= 1, name
    assert np.array_equal(results[1].frames, results[0].frames)  # forward chunking is exact here
    assert np.abs(results[-1].frames.astype(int) - base).max() <= 1


def test_unusable_profile_is_rejected(engine):
    with pytest.raises(ValueError, match="not usable"):
        engine.run(make_spec(), profile_by_name("model_offload"), lambda e: None, threading.Event())


def test_prompt_encoding_matches_the_pipeline(engine):
    pipe = engine._holder.pipe
    te = pipe.text_encoder
    ours = encode_prompts(pipe.tokenizer, te, "a cat", "", torch.device("cpu"), 9.0)
    # The pipeline's own clip_skip=1 path, with the norm where it expects it (older transformers).
    te.__dict__["text_model"] = types.SimpleNamespace(final_layer_norm=te.final_layer_norm)
    try:
        pipe._guidance_scale = 9.0
        theirs = pipe.encode_prompt("a cat", torch.device("cpu"), 1, None, clip_skip=1)
    finally:
        del te.__dict__["text_model"]
    assert ours[1] is not None
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])
    assert ours[0].shape == (1, pipe.tokenizer.model_max_length, te.config.hidden_size)
    positive, negative = encode_prompts(pipe.tokenizer, te, "a cat", "", torch.device("cpu"), 1.0)
    assert negative is None and torch.equal(positive, ours[0])


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ("/nonexistent/i2v-model", "not a pipeline directory"),
        ("no-such-owner/no-such-model", "cannot load model"),
    ],
)
def test_unknown_model_is_a_clear_error(tiny_cache, model, needle):
    with pytest.raises(ValueError, match=needle):
        Engine.load(EngineConfig(model=model, device="cpu", dtype=None, cache_dir=tiny_cache, offline=True))
