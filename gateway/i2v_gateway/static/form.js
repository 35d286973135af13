// The request form: the server's ranges and defaults, size presets, the image, field errors.
const $ = (id) => document.getElementById(id);

export const NUMBER_FIELDS = ["width", "height", "frames", "fps", "steps", "guidance"];
const TEXT_FIELDS = ["prompt", "negative_prompt", "seed", "model"];
// An error's `param` names an API field; these are shown beside the control that sets it.
const ERROR_SLOT = {
  input_reference: "image", image: "image", size: "size", width: "size", height: "size",
  seconds: "frames",
};

let limits = {};
let imageFile = null;
let imageAspect = 1;

export function fieldLimit(name) {
  return (limits.fields && limits.fields[name]) || {};
}

export function applyLimits(received) {
  limits = received || {};
  for (const name of NUMBER_FIELDS) {
    const input = $(name);
    const lim = fieldLimit(name);
    if (lim.min !== undefined) input.min = lim.min;
    if (lim.max !== undefined) input.max = lim.max;
    const step = lim.multiple || lim.step;
    if (step) input.step = step;
    if (lim.default !== undefined && input.value === "") input.value = lim.default;
    const hint = $(name + "-hint");
    if (hint) hint.textContent = rangeText(lim);
  }
  const w = fieldLimit("width");
  const h = fieldLimit("height");
  $("size-hint").textContent = `width ${rangeText(w)}; height ${rangeText(h)}`;
  const prompt = fieldLimit("prompt");
  if (prompt.max_chars) $("prompt").maxLength = prompt.max_chars;
  const seed = fieldLimit("seed");
  // 2**64-1 is past what a JS number holds exactly: name the range instead of printing it
  const seedMax = Number.isSafeInteger(seed.max) ? String(seed.max) : "2⁶⁴−1";
  if (seed.max !== undefined) $("seed-hint").textContent = `0–${seedMax}, empty for random`;
  const degrade = fieldLimit("allow_degrade");
  if (typeof degrade.default === "boolean") $("allow_degrade").checked = degrade.default;
  applyPreset();
}

function rangeText(lim) {
  const parts = [];
  if (lim.min !== undefined && lim.max !== undefined) parts.push(`${lim.min}–${lim.max}`);
  if (lim.multiple) parts.push(`multiple of ${lim.multiple}`);
  if (lim.default !== undefined) parts.push(`default ${lim.default}`);
  return parts.join(", ");
}

function presetValue() {
  const checked = document.querySelector('input[name="preset"]:checked');
  return checked ? checked.value : "custom";
}

// The server's preset "768p": "768x768" as a pixel budget; without one, N×N.
function presetArea(n) {
  const match = /^(\d+)x(\d+)$/.exec((limits.presets || {})[`${n}p`] || "");
  return match ? Number(match[1]) * Number(match[2]) : n * n;
}

// A preset keeps the image's aspect ratio at about the preset's pixel count, on the size grid
// and in range (a square image gets the preset's own size).
export function presetSize(n, aspect) {
  const side = Math.sqrt(presetArea(n));
  const w = fieldLimit("width");
  const h = fieldLimit("height");
  const multiple = w.multiple || 8;
  const fit = (value, lim) => {
    const rounded = Math.max(multiple, Math.round(value / multiple) * multiple);
    return Math.min(lim.max || rounded, Math.max(lim.min || multiple, rounded));
  };
  return [fit(side * Math.sqrt(aspect), w), fit(side / Math.sqrt(aspect), h)];
}

export function applyPreset() {
  const preset = presetValue();
  const custom = preset === "custom";
  $("width").readOnly = !custom;
  $("height").readOnly = !custom;
  if (custom) return;
  const [width, height] = presetSize(Number(preset), imageAspect);
  $("width").value = width;
  $("height").value = height;
}

export function setImage(file) {
  imageFile = file;
  const preview = $("preview");
  if (!file) {
    preview.hidden = true;
    preview.removeAttribute("src");
    return;
  }
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.onload = () => {
    imageAspect = preview.naturalWidth / preview.naturalHeight || 1;
    applyPreset();
  };
  preview.onerror = () => showError("image", "this file is not an image the browser can show");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("dropzone-text").textContent = file.name;
  clearError("image");
}

export function currentImage() {
  return imageFile;
}

export function bindImageInput() {
  const zone = $("dropzone");
  $("image").addEventListener("change", (e) => setImage(e.target.files[0] || null));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) setImage(file);
  });
  for (const radio of document.querySelectorAll('input[name="preset"]')) {
    radio.addEventListener("change", applyPreset);
  }
}

export function showError(param, message) {
  const leaf = String(param || "").split(".").pop();
  const slot = ERROR_SLOT[leaf] || leaf;
  const box = $(slot + "-error") || $("form-error");
  box.textContent = box.id === "form-error" && param ? `${param}: ${message}` : message;
  box.hidden = false;
  const control = slot === "size" ? $("size-group") : $(slot);
  if (control) control.setAttribute("aria-invalid", "true");
  if (control && control.focus && box.id !== "form-error") control.focus();
}

export function clearError(slot) {
  const box = $(slot + "-error");
  if (box) {
    box.hidden = true;
    box.textContent = "";
  }
  const control = slot === "size" ? $("size-group") : $(slot);
  if (control) control.removeAttribute("aria-invalid");
}

export function clearErrors() {
  for (const box of document.querySelectorAll("#gen-form .error")) {
    clearError(box.id.replace(/-error$/, ""));
  }
}

// The form's values, checked against the server's ranges; null after showing the first problem.
export function readParams() {
  const params = { allow_degrade: $("allow_degrade").checked };
  for (const name of TEXT_FIELDS) params[name] = $(name).value.trim();
  for (const name of NUMBER_FIELDS) {
    const raw = $(name).value.trim();
    const lim = fieldLimit(name);
    const value = Number(raw);
    const slot = ERROR_SLOT[name] || name;
    if (raw === "" || !Number.isFinite(value)) return fail(slot, `${name}: enter a number`);
    if (lim.min !== undefined && value < lim.min) return fail(slot, `${name}: at least ${lim.min}`);
    if (lim.max !== undefined && value > lim.max) return fail(slot, `${name}: at most ${lim.max}`);
    if (lim.multiple && value % lim.multiple) return fail(slot, `${name}: a multiple of ${lim.multiple}`);
    params[name] = value;
  }
  if (params.seed && !/^\d+$/.test(params.seed)) return fail("seed", "a whole number, or empty for random");
  if (!imageFile) return fail("image", "pick or drop an input image");
  return params;
}

function fail(slot, message) {
  showError(slot, message);
  return null;
}

export function writeParams(params) {
  for (const name of [...TEXT_FIELDS, ...NUMBER_FIELDS]) {
    if (params[name] !== undefined && params[name] !== null) $(name).value = params[name];
  }
  if (params.allow_degrade !== undefined) $("allow_degrade").checked = Boolean(params.allow_degrade);
  $("preset-custom").checked = true;
  applyPreset();
}

export function toFormData(params, image) {
  const body = new FormData();
  body.append("input_reference", image, image.name || "image.png");
  body.append("prompt", params.prompt);
  body.append("size", `${params.width}x${params.height}`);
  for (const name of ["frames", "fps", "steps", "guidance"]) body.append(name, String(params[name]));
  body.append("allow_degrade", params.allow_degrade ? "true" : "false");
  for (const name of ["negative_prompt", "seed", "model"]) {
    if (params[name]) body.append(name, params[name]);
  }
  return body;
}
