// FaceTracker's page: the exported detector (LiteRT.js, wasm) on the webcam and on image files.
// Preprocessing is Python's `inference.frame_to_input`: the centre square, shrunk to the model's size by
// area averaging (as cv2.INTER_AREA), rounded to 8 bits, RGB in [0, 1].

const CONFIG_FILE = "model.json";
const RUNTIME_WASM = "./vendor/litertjs/wasm/";
const FPS_SMOOTHING = 0.1; // weight of the newest frame in the FPS average, as in Python's FrameRate
const BOX_COLOR = "rgb(0, 0, 255)"; // blue, as `facetracker detect` draws it
const FIX = "Re-export the page with `facetracker export --format web`.";

const $ = (id) => document.getElementById(id);
const state = { config: null, model: null, runtime: null, threshold: 0.5, stream: null, running: false,
                records: [], fps: 0, lastTick: 0, holdOnBox: false };

/** Show one line of status; `kind` is "ok", "busy" or "error" (errors stay until the next success). */
function status(text, kind = "ok") {
  const line = $("status");
  line.textContent = text;
  line.dataset.state = kind;
}

class PageError extends Error {}

async function loadConfig() {
  let response;
  try {
    response = await fetch(CONFIG_FILE, { cache: "no-store" });
  } catch (error) {
    throw new PageError(`Cannot read ${CONFIG_FILE} (${error.message}). ${FIX}`);
  }
  if (!response.ok) throw new PageError(`${CONFIG_FILE} is missing (HTTP ${response.status}). ${FIX}`);
  return response.json();
}

async function loadRuntime() {
  try {
    const runtime = await import("@litertjs/core");
    await runtime.loadLiteRt(RUNTIME_WASM);
    return runtime;
  } catch (error) {
    throw new PageError(`The LiteRT.js runtime did not load (${error.message || error}). ${FIX}`);
  }
}

/** The compiled model, after checking it takes one float32 [1, S, S, 3] image and gives a score and a box. */
async function loadModel(runtime, config) {
  const response = await fetch(config.model, { cache: "no-store" });
  if (!response.ok) throw new PageError(`The model ${config.model} is missing (HTTP ${response.status}). ${FIX}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  let model;
  try {
    model = await runtime.loadAndCompile(bytes, { accelerator: "wasm" });
  } catch (error) {
    throw new PageError(`The model ${config.model} cannot be loaded (${error.message || error}). ${FIX}`);
  }
  const size = config.input_size;
  const input = model.getInputDetails();
  const shape = input.length === 1 ? Array.from(input[0].shape) : [];
  const expected = [1, size, size, 3];
  if (input.length !== 1 || input[0].dtype !== "float32" || shape.join() !== expected.join()) {
    const got = input.map((d) => `${d.dtype}[${Array.from(d.shape).join(", ")}]`).join(", ");
    const batch = shape[0] === -1 ? " Its batch size is open (-1); the page needs a fixed batch of 1." : "";
    throw new PageError(`The model ${config.model} takes ${got || "no input"}; this page needs one float32 `
      + `[${expected.join(", ")}] image.${batch} ${FIX}`);
  }
  const outputs = model.getOutputDetails();
  const pick = (which, length) => outputs.find((d) => d.name === config.outputs[which].name && size1(d) === length)
    ?? outputs.find((d) => size1(d) === length);
  const score = pick("score", 1), box = pick("box", 4);
  if (!score || !box || outputs.length !== 2) {
    const got = outputs.map((d) => `${d.name}[${Array.from(d.shape).join(", ")}]`).join(", ");
    throw new PageError(`The model ${config.model} gives ${got}; this page needs a score [1, 1] and a box [1, 4]. ${FIX}`);
  }
  return { compiled: model, size, scoreIndex: outputs.indexOf(score), boxIndex: outputs.indexOf(box) };
}

const size1 = (details) => Array.from(details.shape).reduce((a, b) => a * b, 1);

/** Round half to even, as OpenCV rounds (cvRound) when it turns an averaged pixel back into 8 bits. */
function roundHalfEven(value) {
  const floor = Math.floor(value), rest = value - floor;
  if (rest > 0.5 || (rest === 0.5 && floor % 2 === 1)) return floor + 1;
  return floor;
}

/** The weights by which source pixels [0, side) cover each of `size` target pixels: cv2.INTER_AREA's. */
function areaWeights(side, size) {
  const scale = side / size, cells = [];
  for (let t = 0; t < size; t++) {
    const start = t * scale, end = start + scale, cell = [];
    for (let s = Math.floor(start); s < Math.min(Math.ceil(end), side); s++) {
      const overlap = Math.min(end, s + 1) - Math.max(start, s);
      if (overlap > 1e-9) cell.push([s, overlap / scale]);
    }
    cells.push(cell);
  }
  return cells;
}

/**
 * The model input of an RGBA image's centre square: Float32Array [size * size * 3], RGB in [0, 1].
 * Each target pixel is the area-weighted mean of the source pixels it covers, rounded to 8 bits, as
 * Python's cv2.resize(..., INTER_AREA) on the uint8 frame followed by / 255.
 */
function areaInput(rgba, width, height, size) {
  const side = Math.min(width, height), x0 = Math.floor((width - side) / 2), y0 = Math.floor((height - side) / 2);
  const cells = areaWeights(side, size);
  const rows = new Float64Array(side * size * 3); // horizontal pass: side rows x size columns
  for (let y = 0; y < side; y++) {
    const row = (y0 + y) * width;
    for (let t = 0; t < size; t++) {
      let r = 0, g = 0, b = 0;
      for (const [s, w] of cells[t]) {
        const p = (row + x0 + s) * 4;
        r += rgba[p] * w; g += rgba[p + 1] * w; b += rgba[p + 2] * w;
      }
      const q = (y * size + t) * 3;
      rows[q] = r; rows[q + 1] = g; rows[q + 2] = b;
    }
  }
  const out = new Float32Array(size * size * 3);
  for (let t = 0; t < size; t++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (const [s, w] of cells[t]) v += rows[(s * size + x) * 3 + c] * w;
        out[(t * size + x) * 3 + c] = Math.min(255, roundHalfEven(v)) / 255;
      }
    }
  }
  return out;
}

/** The same input made the usual browser way, by canvas drawImage (not area averaging): for comparison only. */
function canvasInput(source, width, height, size) {
  const side = Math.min(width, height), x0 = Math.floor((width - side) / 2), y0 = Math.floor((height - side) / 2);
  const canvas = new OffscreenCanvas(size, size);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingQuality = "high";
  context.drawImage(source, x0, y0, side, side, 0, 0, size, size);
  const rgba = context.getImageData(0, 0, size, size).data, out = new Float32Array(size * size * 3);
  for (let i = 0; i < size * size; i++) for (let c = 0; c < 3; c++) out[i * 3 + c] = rgba[i * 4 + c] / 255;
  return out;
}

/** RGBA pixels of a video frame or image bitmap at full resolution. */
function pixels(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(source, 0, 0, width, height);
  return context.getImageData(0, 0, width, height).data;
}

/** Run the model on one input; returns the score and the box (x1, y1, x2, y2) in [0, 1] of the square. */
async function predict(input) {
  const { compiled, size, scoreIndex, boxIndex } = state.model;
  const tensor = new state.runtime.Tensor(input, [1, size, size, 3]);
  let outputs;
  try {
    outputs = await compiled.run([tensor]);
  } finally {
    tensor.delete();
  }
  const score = outputs[scoreIndex].toTypedArray()[0];
  const box = Array.from(outputs[boxIndex].toTypedArray()).map((v) => Math.min(Math.max(v, 0), 1));
  outputs.forEach((t) => t.delete());
  return { score, box };
}

/** The box in pixels of a width x height image, as Python's inference.box_to_frame (sorted, clipped, rounded). */
function boxToImage(box, width, height) {
  const side = Math.min(width, height), x0 = Math.floor((width - side) / 2), y0 = Math.floor((height - side) / 2);
  const [xa, xb] = [box[0], box[2]].sort((a, b) => a - b), [ya, yb] = [box[1], box[3]].sort((a, b) => a - b);
  const clip = (v, limit) => Math.min(Math.max(v, 0), limit);
  return [clip(x0 + xa * side, width), clip(y0 + ya * side, height), clip(x0 + xb * side, width),
          clip(y0 + yb * side, height)].map(roundHalfEven);
}

/** Draw the box with the class name and score when the score reaches the threshold, as `detect` does. */
function drawDetection(context, detection) {
  if (detection.score < state.threshold) return;
  const [x1, y1, x2, y2] = detection.boxPx;
  context.lineWidth = 2;
  context.strokeStyle = BOX_COLOR;
  context.strokeRect(x1, y1, x2 - x1, y2 - y1);
  const text = `${state.config.class_name} ${detection.score.toFixed(2)}`;
  context.font = "16px sans-serif";
  const width = context.measureText(text).width + 6, top = Math.max(y1 - 22, 0);
  context.fillStyle = BOX_COLOR;
  context.fillRect(x1, top, width, 22);
  context.fillStyle = "white";
  context.fillText(text, x1 + 3, top + 16);
}

async function detectSource(source, width, height) {
  const rgba = pixels(source, width, height);
  const { score, box } = await predict(areaInput(rgba, width, height, state.model.size));
  return { score, box, boxPx: boxToImage(box, width, height), width, height };
}

// ---- camera ----

function cameraMessage(error) {
  if (!navigator.mediaDevices?.getUserMedia) {
    return "The camera needs a secure page: open http://127.0.0.1:PORT/ as `facetracker serve` prints it "
      + "(not a LAN address or a file). Image files still work below.";
  }
  if (error.name === "NotAllowedError" || error.name === "SecurityError") {
    return "Camera permission denied: allow the camera for this page (the icon in the address bar) and reload. "
      + "Image files still work below.";
  }
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
    return "No camera found: connect one and reload, or drop image files below.";
  }
  if (error.name === "NotReadableError") {
    return "The camera is busy (another program is using it): close that program and reload.";
  }
  return `The camera did not start (${error.name}: ${error.message}). Image files still work below.`;
}

async function startCamera(deviceId) {
  if (state.stream) state.stream.getTracks().forEach((track) => track.stop());
  state.stream = null;
  try {
    if (!navigator.mediaDevices?.getUserMedia) throw new Error("no mediaDevices");
    const video = deviceId ? { deviceId: { exact: deviceId } } : { width: 640, height: 480 };
    state.stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
  } catch (error) {
    status(cameraMessage(error), "error");
    return;
  }
  const element = $("video");
  element.srcObject = state.stream;
  await element.play();
  await listCameras(state.stream.getVideoTracks()[0].getSettings().deviceId);
  status(`Running ${state.config.model} on the camera (LiteRT.js, wasm).`);
  if (!state.running) {
    state.running = true;
    requestAnimationFrame(cameraLoop);
  }
}

async function listCameras(current) {
  const select = $("camera-select");
  const cameras = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  select.replaceChildren(...cameras.map((camera, index) => new Option(camera.label || `camera ${index}`,
                                                                      camera.deviceId, false, camera.deviceId === current)));
  select.disabled = cameras.length < 2;
}

async function cameraLoop() {
  const video = $("video"), view = $("view");
  if (state.stream && video.readyState >= 2 && video.videoWidth) {
    const width = video.videoWidth, height = video.videoHeight;
    if (view.width !== width || view.height !== height) Object.assign(view, { width, height });
    const context = view.getContext("2d");
    context.drawImage(video, 0, 0, width, height);
    try {
      const detection = await detectSource(view, width, height); // the frame on the canvas, under the overlay
      drawDetection(context, detection);
      const now = performance.now();
      if (state.lastTick) {
        const fps = 1000 / Math.max(now - state.lastTick, 1e-3);
        state.fps = state.fps ? (1 - FPS_SMOOTHING) * state.fps + FPS_SMOOTHING * fps : fps;
      }
      state.lastTick = now;
      context.font = "bold 20px sans-serif";
      context.fillStyle = "rgb(0, 255, 0)";
      context.fillText(`${state.fps.toFixed(1)} FPS`, 8, 24);
      view.dataset.frames = String(Number(view.dataset.frames || 0) + 1); // counts for tests and benchmarks
      if (detection.score >= state.threshold) view.dataset.boxes = String(Number(view.dataset.boxes || 0) + 1);
      view.dataset.score = detection.score.toFixed(4);
      view.dataset.fps = state.fps.toFixed(1);
      if (state.holdOnBox && detection.score >= state.threshold) { // a still frame for a screenshot
        state.running = false;
        view.dataset.held = "1";
        return;
      }
    } catch (error) {
      status(`The model failed on a camera frame (${error.message || error}).`, "error");
      state.running = false;
      return;
    }
  }
  requestAnimationFrame(cameraLoop);
}

// ---- image files ----

/** Decode an image file as cv2.imread does: the orientation it records applied, no colour management. */
function decode(blob) {
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

async function detectFiles(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || /\.(jpe?g|png)$/i.test(f.name));
  if (!images.length) {
    status("None of the dropped files is an image (.jpg, .jpeg, .png).", "error");
    return;
  }
  status(`Detecting on ${images.length} image(s)...`, "busy");
  const skipped = [];
  for (const file of images) {
    let bitmap;
    try {
      bitmap = await decode(file);
    } catch {
      skipped.push(file.name);
      continue;
    }
    const detection = await detectSource(bitmap, bitmap.width, bitmap.height);
    state.records.push({ file: file.name, score: Number(detection.score.toFixed(6)), box: detection.boxPx,
                         width: bitmap.width, height: bitmap.height });
    addThumb(file.name, bitmap, detection);
  }
  showPredictions();
  const note = skipped.length ? ` (${skipped.length} unreadable, skipped: ${skipped.join(", ")})` : "";
  status(`${images.length - skipped.length} image(s) done${note}; predictions below.`, skipped.length ? "error" : "ok");
}

function addThumb(name, bitmap, detection) {
  const figure = document.createElement("figure"), canvas = document.createElement("canvas");
  Object.assign(canvas, { width: bitmap.width, height: bitmap.height });
  const caption = document.createElement("figcaption");
  caption.textContent = `${name}: ${detection.score.toFixed(2)}`;
  figure.append(canvas, caption);
  figure.redraw = () => {
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0);
    drawDetection(context, detection);
  };
  figure.redraw();
  $("thumbs").append(figure);
}

function showPredictions() {
  const text = state.records.map((r) => JSON.stringify(r)).join("\n") + (state.records.length ? "\n" : "");
  $("predictions").textContent = text;
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([text], { type: "application/jsonl" }));
  link.hidden = !state.records.length;
}

function wireImages() {
  $("files").addEventListener("change", (event) => detectFiles(event.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    detectFiles(event.dataTransfer.files);
  });
}

function wireThreshold() {
  const slider = $("threshold");
  slider.value = String(state.threshold);
  const show = () => {
    state.threshold = Number(slider.value);
    $("threshold-value").textContent = state.threshold.toFixed(2);
    document.querySelectorAll("#thumbs figure").forEach((figure) => figure.redraw());
  };
  slider.addEventListener("input", show);
  show();
}

// For tests and benchmarks: the page's own preprocessing and model, on bytes given by the caller.
window.facetracker = {
  /** Stop the camera loop on the next frame that shows a box (the frame stays on screen). */
  holdOnBox() {
    state.holdOnBox = true;
  },
  async input(blob, method = "area") {
    const bitmap = await decode(blob);
    const size = state.model.size;
    return method === "area" ? areaInput(pixels(bitmap, bitmap.width, bitmap.height), bitmap.width, bitmap.height, size)
      : canvasInput(bitmap, bitmap.width, bitmap.height, size);
  },
  /** Milliseconds per call, after one warm-up: "model" runs the model on a fixed input, "preprocess" turns a
   * 640x480 frame into the model's input (centre square, area averaging), "frame" does both. */
  async time(runs, what = "model") {
    const size = state.model.size, input = new Float32Array(size * size * 3).fill(0.5);
    const frame = new OffscreenCanvas(640, 480), context = frame.getContext("2d");
    const gradient = context.createLinearGradient(0, 0, 640, 480);
    gradient.addColorStop(0, "rgb(200, 120, 40)");
    gradient.addColorStop(1, "rgb(30, 60, 220)");
    context.fillStyle = gradient;
    context.fillRect(0, 0, 640, 480);
    const ways = { model: () => predict(input), frame: () => detectSource(frame, 640, 480),
                   preprocess: async () => areaInput(pixels(frame, 640, 480), 640, 480, size) };
    const once = ways[what];
    await once();
    const start = performance.now();
    for (let i = 0; i < runs; i++) await once();
    return (performance.now() - start) / runs;
  },
};

async function main() {
  status("Loading the model...", "busy");
  try {
    state.config = await loadConfig();
    state.threshold = state.config.threshold;
    $("model-name").textContent = `${state.config.model} (${state.config.quantize})`;
    state.runtime = await loadRuntime();
    state.model = await loadModel(state.runtime, state.config);
  } catch (error) {
    status(error instanceof PageError ? error.message : `The page failed to start (${error.message || error}).`, "error");
    document.body.dataset.ready = "error";
    return;
  }
  wireThreshold();
  wireImages();
  $("camera-select").addEventListener("change", (event) => startCamera(event.target.value));
  document.body.dataset.ready = "model";
  const params = new URLSearchParams(location.search);
  if (params.get("camera") === "off") {
    status(`${state.config.model} loaded; drop image files below.`);
    return;
  }
  await startCamera();
}

main();
