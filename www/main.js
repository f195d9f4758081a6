// Opens a device through xtal-web (WebGPU, else CPU) and runs the cross-backend check.
import init, { openDevice, linearStepCheck } from "./pkg/xtal_web.js";

const deviceLine = document.getElementById("device");
const button = document.getElementById("check");
const table = document.getElementById("results");

// A small deterministic case: 4×8 inputs, an 8→3 linear layer, one SGD step.
function checkCase() {
  const wave = (n, scale, phase) => Array.from({ length: n }, (_, k) => scale * Math.sin(k * 0.731 + phase));
  return {
    batch: 4, in_features: 8, out_features: 3,
    input: wave(32, 1.0, 0.1), target: wave(12, 0.8, 0.7),
    weight: wave(24, 0.3, 1.3), bias: wave(3, 0.1, 2.1), learning_rate: 0.1,
  };
}

function showError(message) {
  deviceLine.textContent = message;
  deviceLine.classList.add("error");
}

async function main() {
  try {
    await init();
  } catch (e) {
    showError(`Could not load xtal's WebAssembly (run web/build.sh first?): ${e}`);
    return;
  }
  const device = await openDevice("auto");
  deviceLine.textContent = `Computing on ${device.kind === "webgpu" ? device.description : "the CPU"}` +
    (device.fallbackReason ? ` (WebGPU unavailable: ${device.fallbackReason})` : "");
  button.disabled = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const json = JSON.stringify(checkCase());
      const cpu = JSON.parse(await linearStepCheck("cpu", json));
      const rows = [["cpu", cpu]];
      if (device.kind === "webgpu") rows.push(["webgpu", JSON.parse(await linearStepCheck("webgpu", json))]);
      const tbody = table.querySelector("tbody");
      tbody.innerHTML = "";
      for (const [name, r] of rows) {
        const diff = Math.max(...r.new_output.map((v, i) => Math.abs(v - cpu.new_output[i])));
        tbody.insertAdjacentHTML("beforeend", `<tr><td>${name}</td><td>${r.loss.toFixed(6)}</td><td>${diff.toExponential(1)}</td></tr>`);
      }
      table.hidden = false;
    } catch (e) {
      showError(`The check failed: ${e}`);
    } finally {
      button.disabled = false;
    }
  });
}

main();
