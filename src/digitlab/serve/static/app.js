// The write-a-number page: a wide canvas drawn with pointer events (mouse, pen or touch).
// Read sends it to POST /read as a PNG: the numbers appear below, a line of text per line of
// writing, each digit boxed on the canvas with its probability. Predict sends it to POST /predict: the answer fills the
// digit, the bar chart and the 28×28 view.
"use strict";

const PEN_WIDTH = 22; // canvas pixels: on a 280 px tall canvas, strokes as thick as MNIST's
const PAPER = "#ffffff";
const INK = "#111111";
const BOX = "#4f46e5"; // the page's accent colour
const LABEL_FONT = "bold 20px system-ui, sans-serif";
const LABEL_HEIGHT = 26; // canvas pixels of a box's label

const canvas = document.getElementById("canvas");
const pen = canvas.getContext("2d");
const overlay = document.getElementById("overlay").getContext("2d");
const view = document.getElementById("view").getContext("2d");
const predictionBox = document.getElementById("prediction");
const statusLine = document.getElementById("status");
const readingBox = document.getElementById("reading");
const readStatus = document.getElementById("read-status");
const modelLine = document.getElementById("model");
const bars = buildBars(document.getElementById("bars"));

// Every request gets a number; an answer arriving after Clear (or a newer request of the
// same kind) is stale.
let latestPredict = 0;
let latestRead = 0;
let drawing = false;
// Where the picture that was read sits on the canvas: a drawing fills it (scale 1), an
// uploaded photo is fitted and centred, and its boxes come back in the photo's pixels.
let placement = { scale: 1, dx: 0, dy: 0 };

function buildBars(list) {
  const rows = [];
  for (let digit = 0; digit < 10; digit++) {
    const item = document.createElement("li");
    item.innerHTML =
      `<span class="label">${digit}</span>` +
      `<span class="track"><span class="fill"></span></span>` +
      `<span class="percent"></span>`;
    list.appendChild(item);
    rows.push(item);
  }
  return rows;
}

function clearAll() {
  latestPredict++;
  latestRead++;
  placement = { scale: 1, dx: 0, dy: 0 };
  pen.fillStyle = PAPER;
  pen.fillRect(0, 0, canvas.width, canvas.height);
  pen.fillStyle = INK;
  overlay.clearRect(0, 0, canvas.width, canvas.height);
  view.clearRect(0, 0, 28, 28);
  explainView(null);
  predictionBox.textContent = "";
  statusLine.textContent = "Draw a digit, then press Predict.";
  readingBox.textContent = "";
  readStatus.textContent = "Write a number across the box, then press Read.";
  readStatus.classList.remove("empty");
  showProbabilities(null);
}

// --- drawing ---------------------------------------------------------------------------

function canvasPoint(event) {
  // The canvas may be shown smaller than its 280 px (phones): scale back to canvas pixels.
  const box = canvas.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * canvas.width) / box.width,
    y: ((event.clientY - box.top) * canvas.height) / box.height,
  };
}

function startStroke(event) {
  drawing = true;
  // The boxes of an earlier reading no longer match what is written.
  overlay.clearRect(0, 0, canvas.width, canvas.height);
  canvas.setPointerCapture(event.pointerId);
  const { x, y } = canvasPoint(event);
  // A tap leaves a dot: drawn as a disc, since Chrome draws no caps on a zero-length line.
  pen.beginPath();
  pen.arc(x, y, PEN_WIDTH / 2, 0, 2 * Math.PI);
  pen.fill();
  pen.beginPath();
  pen.moveTo(x, y);
}

function continueStroke(event) {
  if (!drawing) return;
  const { x, y } = canvasPoint(event);
  pen.lineTo(x, y);
  pen.stroke();
}

function endStroke() {
  drawing = false;
}

// --- asking the server ---------------------------------------------------------------------

async function post(url, body, headers) {
  // → { ok, answer }: the JSON answer, or { detail } saying what went wrong.
  try {
    const response = await fetch(url, { method: "POST", body, headers });
    return { ok: response.ok, answer: await response.json() };
  } catch (error) {
    return { ok: false, answer: { detail: `cannot reach the server (${error.message})` } };
  }
}

async function predict(body, headers) {
  const request = ++latestPredict;
  statusLine.textContent = "Thinking…";
  const { ok, answer } = await post("predict", body, headers);
  if (request !== latestPredict) return;
  if (ok) showAnswer(answer);
  else showError(answer.detail);
}

async function read(body, headers) {
  const request = ++latestRead;
  readStatus.textContent = "Reading…";
  const { ok, answer } = await post("read", body, headers);
  if (request !== latestRead) return;
  if (ok) showReading(answer);
  else showReadError(answer.detail);
}

function canvasAsJSON() {
  return [JSON.stringify({ image: canvas.toDataURL("image/png") }), { "Content-Type": "application/json" }];
}

function predictDrawing() {
  predict(...canvasAsJSON());
}

function readDrawing() {
  placement = { scale: 1, dx: 0, dy: 0 };
  read(...canvasAsJSON());
}

async function sendUpload(file) {
  await showOnCanvas(file);
  // The photo itself, not its smaller copy on the canvas, is read and predicted.
  const form = () => {
    const data = new FormData();
    data.append("file", file);
    return data;
  };
  read(form(), {}); // the browser sets the multipart Content-Type itself
  predict(form(), {});
}

async function showOnCanvas(file) {
  // Draw the photo on the canvas (fitted, centred) so the user sees what was sent.
  clearAll();
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const width = bitmap.width * scale;
    const height = bitmap.height * scale;
    placement = { scale, dx: (canvas.width - width) / 2, dy: (canvas.height - height) / 2 };
    pen.drawImage(bitmap, placement.dx, placement.dy, width, height);
  } catch {
    // Not something the browser can show; the server still says what it makes of it.
  }
}

// --- showing the answer ----------------------------------------------------------------

function showAnswer(answer) {
  modelLine.textContent = `model: ${answer.model} · ${answer.latency_ms.toFixed(1)} ms on the server`;
  if (answer.digit === null) {
    predictionBox.textContent = "";
    statusLine.textContent = capitalise(answer.reason);
    showProbabilities(null);
    view.clearRect(0, 0, 28, 28);
    explainView(null);
    return;
  }
  predictionBox.textContent = String(answer.digit);
  statusLine.textContent = `${(answer.probability * 100).toFixed(1)}% sure`;
  showProbabilities(answer.probabilities, answer.digit);
  showView(answer.view);
}

function showReading(answer) {
  modelLine.textContent = `model: ${answer.model} · ${answer.latency_ms.toFixed(1)} ms on the server`;
  overlay.clearRect(0, 0, canvas.width, canvas.height);
  if (answer.text === null) {
    readingBox.textContent = "";
    readStatus.textContent = capitalise(answer.reason);
    readStatus.classList.add("empty");
    return;
  }
  readStatus.classList.remove("empty");
  readingBox.textContent = answer.text; // lines of writing are lines of text (pre-line)
  readStatus.textContent = sureOf(answer);
  answer.digits.forEach(drawBox);
}

function sureOf(answer) {
  const sure = `${(answer.confidence * 100).toFixed(1)}% sure`;
  const numbers = answer.numbers.length;
  if (numbers > 1) return `${sure} of all ${numbers} numbers`;
  const digits = answer.digits.length;
  return digits === 1 ? `${sure} of the digit` : `${sure} of all ${digits} digits`;
}

function drawBox(found) {
  const { scale, dx, dy } = placement;
  const [x, y, width, height] = found.box.map((value) => value * scale);
  const left = dx + x;
  const top = dy + y;
  overlay.strokeStyle = BOX;
  overlay.lineWidth = 3;
  overlay.strokeRect(left, top, width, height);
  // The label sits above the box, or inside it when the box touches the top.
  const label = `${found.digit} ${Math.round(found.probability * 100)}%`;
  overlay.font = LABEL_FONT;
  const labelWidth = overlay.measureText(label).width + 10;
  const labelTop = top >= LABEL_HEIGHT ? top - LABEL_HEIGHT : top;
  overlay.fillStyle = BOX;
  overlay.fillRect(left - 1.5, labelTop, labelWidth, LABEL_HEIGHT);
  overlay.fillStyle = "#ffffff";
  overlay.textBaseline = "middle";
  overlay.fillText(label, left + 4, labelTop + LABEL_HEIGHT / 2);
}

function showReadError(detail) {
  readingBox.textContent = "";
  overlay.clearRect(0, 0, canvas.width, canvas.height);
  readStatus.textContent = capitalise(detail || "something went wrong");
  readStatus.classList.remove("empty");
}

function showError(detail) {
  predictionBox.textContent = "";
  statusLine.textContent = capitalise(detail || "something went wrong");
  showProbabilities(null);
}

function showProbabilities(probabilities, best) {
  bars.forEach((row, digit) => {
    const p = probabilities ? probabilities[digit] : 0;
    row.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector(".percent").textContent = probabilities ? `${Math.round(p * 100)}%` : "";
    row.classList.toggle("best", digit === best);
  });
}

function showView(rows) {
  const image = view.createImageData(28, 28);
  rows.flat().forEach((level, i) => {
    image.data.set([level, level, level, 255], i * 4);
  });
  view.putImageData(image, 0, 0);
  explainView(rows);
}

// --- why this digit: POST /explain's map of the answer, over the view -----------------------

const whyToggle = document.getElementById("why");
const whyNote = document.getElementById("why-note");
const FOR = [239, 68, 68]; // red: ink that made the answer
const AGAINST = [59, 130, 246]; // blue: ink that spoke against it
let shownView = null; // the 28×28 rows the view shows, or null
let explanation = null; // /explain's answer for shownView, once it has come
let latestExplain = 0;

async function explainView(rows) {
  // Called whenever the view changes (null: emptied). The map is fetched only while the
  // toggle is on; the view's own pixels are sent, so the map lies exactly over them.
  const request = ++latestExplain;
  shownView = rows;
  explanation = null;
  drawWhy();
  if (!rows || !whyToggle.checked) return;
  whyNote.hidden = false;
  whyNote.textContent = "Working out why…";
  const body = JSON.stringify({ pixels: rows });
  const { ok, answer } = await post("explain", body, { "Content-Type": "application/json" });
  if (request !== latestExplain) return;
  if (!ok) {
    whyNote.textContent = capitalise(answer.detail || "cannot explain this one");
    return;
  }
  explanation = answer;
  drawWhy();
}

function drawWhy() {
  // The view in grey, tinted where the answer's map is strong: red for, blue against. The
  // square root of each pixel's share of the strongest one: most pixels are weak, and a
  // linear tint left them looking plain grey.
  const showing = whyToggle.checked && explanation !== null && explanation.answer !== null;
  whyNote.hidden = !showing;
  if (!shownView) return;
  if (!showing) {
    if (explanation === null && whyToggle.checked) return; // keep the plain view while waiting
    const plain = view.createImageData(28, 28);
    shownView.flat().forEach((level, i) => plain.data.set([level, level, level, 255], i * 4));
    view.putImageData(plain, 0, 0);
    return;
  }
  const weights = explanation.answer.map.flat();
  const strongest = Math.max(...weights.map(Math.abs)) || 1;
  const image = view.createImageData(28, 28);
  shownView.flat().forEach((level, i) => {
    const share = Math.sqrt(Math.abs(weights[i]) / strongest);
    const tint = weights[i] > 0 ? FOR : AGAINST;
    const mixed = tint.map((channel) => Math.round(level * (1 - share) + channel * share));
    image.data.set([...mixed, 255], i * 4);
  });
  view.putImageData(image, 0, 0);
  const { answer, runner_up: runnerUp } = explanation;
  whyNote.textContent =
    `Red: ink that made it a ${answer.digit}; blue: ink against it. ` +
    `Runner-up: ${runnerUp.digit} (${(runnerUp.probability * 100).toFixed(1)}%).`;
}

whyToggle.addEventListener("change", () => {
  if (whyToggle.checked && shownView && explanation === null) explainView(shownView);
  else drawWhy();
});

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// --- wiring ------------------------------------------------------------------------------

pen.lineWidth = PEN_WIDTH;
pen.lineCap = "round";
pen.lineJoin = "round";
pen.strokeStyle = INK;

canvas.addEventListener("pointerdown", startStroke);
canvas.addEventListener("pointermove", continueStroke);
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);
document.getElementById("read").addEventListener("click", readDrawing);
document.getElementById("predict").addEventListener("click", predictDrawing);
document.getElementById("clear").addEventListener("click", clearAll);
document.getElementById("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) sendUpload(file);
  event.target.value = ""; // choosing the same file again still triggers a change
});

clearAll();
fetch("health")
  .then((response) => response.json())
  .then((health) => (modelLine.textContent = `model: ${health.model}`))
  .catch(() => (modelLine.textContent = "the server is not reachable"));
