// voxgan's page viewer: every volume of the page drawn by one three.js WebGL renderer on one canvas, each
// in the viewport of its cell (three.js's "multiple elements" pattern), so a page shows any number of
// volumes with one WebGL context. A drag turns the volume under the pointer; a double click turns it back.
//
// The page holds: three.js's module source in <script id="voxgan-three" type="text/plain">, imported from
// a Blob URL (a browser refuses module files from file://); the volumes in <script id="voxgan-data">, as
// {"cells": [{"r": R, "v": base64 of numpy.packbits(occupancy[x, y, z] in C order)}]}; and one
// <div class="view" data-cell="i"> per volume. The page reports on <html data-voxgan-frames="n"
// data-voxgan-drawn="cells drawn in the last frame" data-voxgan-error="...">.

const status = document.documentElement.dataset;

function fail(message) {
  status.voxganError = message;
  const box = document.getElementById("voxgan-message");
  box.textContent = message;
  box.hidden = false;
}

window.addEventListener("error", (event) => fail(`The 3D view failed: ${event.message}`));

const BASE_COLOUR = 0x5c94db;
const FLOOR_COLOUR = 0xe2e5ea;
const FIRST_YAW = -Math.PI / 4; // seen from (+x, -y, +z), as voxgan's PNG pictures are
const FIRST_PITCH = 0.55;

function decodeVolume(text, r) {
  // base64 of packbits, most significant bit first  ->  Uint8Array(r³) of 0/1, index (x * r + y) * r + z
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const occupancy = new Uint8Array(r * r * r);
  for (let i = 0; i < occupancy.length; i++) occupancy[i] = (bytes[i >> 3] >> (7 - (i & 7))) & 1;
  return occupancy;
}

function exposedVoxels(occupancy, r) {
  // [x, y, z] of the occupied voxels with an empty 6-neighbour (outside the grid is empty)
  const at = (x, y, z) =>
    x >= 0 && y >= 0 && z >= 0 && x < r && y < r && z < r && occupancy[(x * r + y) * r + z] === 1;
  const voxels = [];
  for (let x = 0; x < r; x++)
    for (let y = 0; y < r; y++)
      for (let z = 0; z < r; z++)
        if (at(x, y, z) && !(at(x - 1, y, z) && at(x + 1, y, z) && at(x, y - 1, z) &&
                             at(x, y + 1, z) && at(x, y, z - 1) && at(x, y, z + 1)))
          voxels.push([x, y, z]);
  return voxels;
}

async function start() {
  const url = URL.createObjectURL(
    new Blob([document.getElementById("voxgan-three").textContent], { type: "text/javascript" }));
  const THREE = await import(url);
  URL.revokeObjectURL(url);
  const data = JSON.parse(document.getElementById("voxgan-data").textContent);
  const canvas = document.getElementById("voxgan-canvas");
  let renderer;
  try {
    renderer = new THREE.WebGLRenderer({ canvas, antialias: true, alpha: true });
  } catch (error) {
    fail(`This page draws volumes in 3D with WebGL, which this browser cannot give: ${error.message}`);
    return;
  }
  renderer.setPixelRatio(window.devicePixelRatio);
  renderer.setClearColor(0x000000, 0);
  renderer.setScissorTest(true);

  const scene = new THREE.Scene();
  // lit like voxgan's PNG pictures: the top fully, the -y side at about 0.78 and the +x side at 0.58 (sRGB)
  const ambient = new THREE.AmbientLight(0xffffff, 0.15 * Math.PI);
  const sun = new THREE.DirectionalLight(0xffffff, Math.PI);
  sun.position.set(0.15, -0.43, 0.85);
  scene.add(ambient, sun);
  const camera = new THREE.PerspectiveCamera(30, 1, 0.1, 10000);
  camera.up.set(0, 0, 1);

  // a light border on each cube face, so that the blocks of a flat side read as blocks
  const pixels = new Uint8Array(8 * 8 * 4).fill(255);
  for (let i = 0; i < 64; i++) {
    const u = i % 8, v = i >> 3;
    if (u === 0 || v === 0 || u === 7 || v === 7) pixels.fill(200, 4 * i, 4 * i + 3);
  }
  const edges = new THREE.DataTexture(pixels, 8, 8);
  edges.magFilter = THREE.NearestFilter;
  edges.colorSpace = THREE.SRGBColorSpace;
  edges.needsUpdate = true;
  const material = new THREE.MeshLambertMaterial({ color: BASE_COLOUR, map: edges });
  const floorMaterial = new THREE.MeshBasicMaterial({ color: FLOOR_COLOUR });
  const cube = new THREE.BoxGeometry(1, 1, 1);

  function buildModel(entry) {
    const r = entry.r;
    const group = new THREE.Group();
    const floor = new THREE.Mesh(new THREE.PlaneGeometry(r, r), floorMaterial);
    floor.position.set(r / 2, r / 2, -0.01);
    group.add(floor);
    const voxels = exposedVoxels(decodeVolume(entry.v, r), r);
    if (voxels.length > 0) {
      const blocks = new THREE.InstancedMesh(cube, material, voxels.length);
      const place = new THREE.Matrix4();
      voxels.forEach(([x, y, z], i) => blocks.setMatrixAt(i, place.makeTranslation(x + 0.5, y + 0.5, z + 0.5)));
      group.add(blocks);
    }
    return group;
  }

  const cells = [...document.querySelectorAll(".view[data-cell]")].map((element) => ({
    element,
    entry: data.cells[Number(element.dataset.cell)],
    model: null,
    yaw: FIRST_YAW,
    pitch: FIRST_PITCH,
  }));

  let pending = false;
  let frames = 0;
  function requestRender() {
    if (!pending) {
      pending = true;
      requestAnimationFrame(render);
    }
  }

  function render() {
    pending = false;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    const size = renderer.getSize(new THREE.Vector2());
    if (size.x !== width || size.y !== height) renderer.setSize(width, height, false);
    renderer.setScissor(0, 0, width, height);
    renderer.clear();
    let drawn = 0;
    for (const cell of cells) {
      const rect = cell.element.getBoundingClientRect();
      if (rect.bottom < 0 || rect.top > height || rect.right < 0 || rect.left > width) continue;
      cell.model ??= buildModel(cell.entry);
      const r = cell.entry.r, distance = 3.0 * r;
      camera.position.set(
        r / 2 + distance * Math.cos(cell.pitch) * Math.cos(cell.yaw),
        r / 2 + distance * Math.cos(cell.pitch) * Math.sin(cell.yaw),
        r / 2 + distance * Math.sin(cell.pitch));
      camera.aspect = rect.width / rect.height;
      camera.updateProjectionMatrix();
      camera.lookAt(r / 2, r / 2, r / 2);
      const bottom = height - rect.bottom;
      renderer.setViewport(rect.left, bottom, rect.width, rect.height);
      renderer.setScissor(rect.left, bottom, rect.width, rect.height);
      scene.add(cell.model);
      renderer.render(scene, camera);
      scene.remove(cell.model);
      drawn++;
    }
    frames++;
    status.voxganDrawn = drawn;
    status.voxganFrames = frames;
  }

  for (const cell of cells) {
    let last = null;
    cell.element.addEventListener("pointerdown", (event) => {
      last = [event.clientX, event.clientY];
      cell.element.setPointerCapture(event.pointerId);
      event.preventDefault();
    });
    cell.element.addEventListener("pointermove", (event) => {
      if (last === null) return;
      cell.yaw -= 0.01 * (event.clientX - last[0]);
      cell.pitch = Math.max(-1.45, Math.min(1.45, cell.pitch + 0.01 * (event.clientY - last[1])));
      last = [event.clientX, event.clientY];
      requestRender();
    });
    const release = () => { last = null; };
    cell.element.addEventListener("pointerup", release);
    cell.element.addEventListener("pointercancel", release);
    cell.element.addEventListener("dblclick", () => {
      cell.yaw = FIRST_YAW;
      cell.pitch = FIRST_PITCH;
      requestRender();
    });
  }
  window.addEventListener("scroll", requestRender, { passive: true });
  window.addEventListener("resize", requestRender);
  new ResizeObserver(requestRender).observe(document.body); // the cells moved (a <details> opened, ...)
  requestRender();
}

start().catch((error) => fail(`The 3D view failed: ${error.message}`));
