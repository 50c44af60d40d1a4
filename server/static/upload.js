// Satchel upload page: hash the chosen files in the browser (SHA-256), ask the server which
// ones it already has, and upload only the others in one request with a progress bar.
// Wire format (docs/protocol.md, "Web upload"): u32 big-endian N, N bytes of JSON header,
// then the bytes of each file marked "send", in header order (or the zip's bytes).
"use strict";

(() => {
  // -- SHA-256 in plain JavaScript -------------------------------------------------------
  // WebCrypto exists only in secure contexts (HTTPS or localhost): a school server reached
  // as http://192.168.x.y has none. This streaming version also hashes files too large to
  // hold in memory at once.
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  class Sha256 {
    constructor() {
      this.h = new Uint32Array([
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
      ]);
      this.buf = new Uint8Array(64);
      this.bufLen = 0;
      this.total = 0;
      this.w = new Uint32Array(64);
    }

    update(data) {
      let i = 0;
      this.total += data.length;
      if (this.bufLen) {
        const take = Math.min(64 - this.bufLen, data.length);
        this.buf.set(data.subarray(0, take), this.bufLen);
        this.bufLen += take;
        i = take;
        if (this.bufLen === 64) {
          this.block(this.buf, 0);
          this.bufLen = 0;
        }
      }
      for (; i + 64 <= data.length; i += 64) this.block(data, i);
      if (i < data.length) {
        this.buf.set(data.subarray(i), 0);
        this.bufLen = data.length - i;
      }
      return this;
    }

    block(d, o) {
      const w = this.w;
      for (let t = 0; t < 16; t++) {
        const p = o + 4 * t;
        w[t] = (d[p] << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3];
      }
      for (let t = 16; t < 64; t++) {
        const x = w[t - 15];
        const y = w[t - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      const H = this.h;
      let a = H[0], b = H[1], c = H[2], d0 = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
      for (let t = 0; t < 64; t++) {
        const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const ch = (e & f) ^ (~e & g);
        const t1 = (h + S1 + ch + K[t] + w[t]) | 0;
        const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const maj = (a & b) ^ (a & c) ^ (b & c);
        h = g; g = f; f = e; e = (d0 + t1) | 0; d0 = c; c = b; b = a; a = (t1 + S0 + maj) | 0;
      }
      H[0] += a; H[1] += b; H[2] += c; H[3] += d0; H[4] += e; H[5] += f; H[6] += g; H[7] += h;
    }

    hex() {
      const bits = this.total * 8;
      const pad = new Uint8Array((this.bufLen < 56 ? 64 : 128) - this.bufLen);
      pad[0] = 0x80;
      const view = new DataView(pad.buffer);
      view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
      view.setUint32(pad.length - 4, bits >>> 0);
      this.update(pad);
      return Array.from(this.h, (x) => x.toString(16).padStart(8, "0")).join("");
    }
  }

  const SLICE = 4 * 1024 * 1024;
  const WEBCRYPTO_MAX = 64 * 1024 * 1024; // above this, stream instead of holding the file

  function toHex(buffer) {
    return Array.from(new Uint8Array(buffer), (x) => x.toString(16).padStart(2, "0")).join("");
  }

  async function hashFile(file, onBytes) {
    if (globalThis.crypto && crypto.subtle && file.size <= WEBCRYPTO_MAX) {
      const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
      onBytes(file.size);
      return toHex(digest);
    }
    const hash = new Sha256();
    for (let at = 0; at < file.size; at += SLICE) {
      const piece = new Uint8Array(await file.slice(at, at + SLICE).arrayBuffer());
      hash.update(piece);
      onBytes(piece.length);
    }
    return hash.hex();
  }

  // Files travel gzip-compressed when that saves at least 10% (the server checks the size and
  // SHA-256 after inflating them): on a poor link a lesson's HTML costs a quarter of its size.
  // Text-like names are always tried; other files only when their first 64 KiB shrink (many
  // JPEG diagrams do, video and most photos do not), so no time goes into hopeless files.
  const TEXTLIKE = /\.(html?|xhtml|md|markdown|cnxml|xml|svg|css|js|mjs|json|txt|csv|tsv|vtt|srt|ya?ml|toml|tex|py|r|sh)$/i;
  const PROBE = 64 * 1024;

  async function gzipBlob(blob) {
    return new Response(blob.stream().pipeThrough(new CompressionStream("gzip"))).blob();
  }

  async function gzipped(file) {
    if (!globalThis.CompressionStream || file.size < 512 || file.size > WEBCRYPTO_MAX) return null;
    if (!TEXTLIKE.test(file.name) && file.size > PROBE) {
      const probe = await gzipBlob(file.slice(0, PROBE));
      if (probe.size > PROBE * 0.9) return null;
    }
    const blob = await gzipBlob(file);
    return blob.size < file.size * 0.9 ? blob : null;
  }

  // For the browser tests: the fallback must agree with WebCrypto and sha256sum.
  globalThis.SatchelUpload = { Sha256, hashFile };

  // -- the page --------------------------------------------------------------------------
  const form = document.getElementById("upload-form");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const progress = $("upload-progress");
  const status = $("upload-status");
  const errorBox = $("upload-error");
  const button = $("upload-button");
  const csrf = form.dataset.csrf;

  function say(text) {
    status.textContent = text;
  }

  function fail(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    say("");
    progress.value = 0;
    button.disabled = false;
  }

  function size(n) {
    if (n < 1000) return `${n} B`;
    const units = ["KB", "MB", "GB"];
    let v = n;
    let u = -1;
    while (v >= 1000 && u < units.length - 1) {
      v /= 1000;
      u += 1;
    }
    return `${v.toFixed(1)} ${units[u]}`;
  }

  async function postJSON(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || `the server answered ${resp.status}`);
    return data;
  }

  function frame(header, parts) {
    const json = new TextEncoder().encode(JSON.stringify(header));
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, json.length);
    return new Blob([head, json, ...parts]);
  }

  function send(url, body) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.upload.onprogress = (ev) => {
        if (ev.lengthComputable) {
          progress.value = (100 * ev.loaded) / ev.total;
          say(`Uploading: ${size(ev.loaded)} of ${size(ev.total)}`);
        }
      };
      xhr.upload.onload = () => {
        progress.removeAttribute("value"); // indeterminate while the server publishes
        say("Publishing: the server is cutting and compressing the new files…");
      };
      xhr.onload = () => {
        let data = {};
        try {
          data = JSON.parse(xhr.responseText);
        } catch (_) {
          /* not JSON: reported below */
        }
        if (xhr.status === 200) resolve(data);
        else reject(new Error(data.error || `the server answered ${xhr.status}`));
      };
      xhr.onerror = () => reject(new Error("the connection failed; nothing was published, try again"));
      xhr.send(body);
    });
  }

  function relativePath(file) {
    // webkitRelativePath is "chosen-folder/sub/file"; the version holds "sub/file".
    const parts = (file.webkitRelativePath || file.name).split("/");
    if (parts.length > 1) parts.shift();
    return parts.join("/").normalize("NFC");
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    errorBox.hidden = true;
    if (!form.reportValidity()) return;
    const bundle = $("bundle").value.trim();
    const locale = $("locale").value.trim();
    const fromLocale = $("from-locale").value || null;
    const baseVersion = $("base-version").value.trim();
    const folder = Array.from($("folder").files || []);
    const zip = ($("zip").files || [])[0];
    if (folder.length && zip) return fail("Choose a folder or a zip file, not both.");
    if (!folder.length && !zip) return fail("Choose a folder or a zip file to upload.");
    const query = new URLSearchParams();
    if (fromLocale) query.set("from_locale", fromLocale);
    if (fromLocale && baseVersion) query.set("base_version", baseVersion);
    const where = `${encodeURIComponent(bundle)}/${encodeURIComponent(locale)}?${query}`;
    const common = {
      title: $("title").value.trim(),
      notes: $("notes").value.trim(),
    };
    button.disabled = true;
    try {
      let header;
      let parts;
      if (zip) {
        // Ask first with no files: a refusal (no right to publish here) comes before the upload.
        await postJSON(`/web/api/unchanged/${where}`, { files: [] });
        header = { kind: "zip", zip_size: zip.size, ...common };
        parts = [zip];
      } else {
        const files = folder.map((f) => ({ file: f, path: relativePath(f), size: f.size }));
        const total = files.reduce((n, f) => n + f.size, 0);
        let done = 0;
        for (const [i, f] of files.entries()) {
          say(`Checking files: ${i + 1} of ${files.length}`);
          f.sha256 = await hashFile(f.file, (n) => {
            done += n;
            progress.value = total ? (100 * done) / total : 100;
          });
        }
        say("Asking the server which files it already has…");
        const answer = await postJSON(`/web/api/unchanged/${where}`, {
          files: files.map((f) => ({ path: f.path, sha256: f.sha256, size: f.size })),
        });
        const have = new Set(answer.unchanged);
        const sending = files.filter((f) => !have.has(f.path));
        for (const [i, f] of sending.entries()) {
          say(`Compressing: ${i + 1} of ${sending.length} files to send`);
          f.gzip = await gzipped(f.file);
        }
        header = {
          kind: "folder",
          ...common,
          files: files.map((f) => {
            const entry = { path: f.path, size: f.size, sha256: f.sha256, send: !have.has(f.path) };
            if (entry.send && f.gzip) Object.assign(entry, { encoding: "gzip", wire_size: f.gzip.size });
            return entry;
          }),
        };
        parts = sending.map((f) => f.gzip || f.file);
        say(`${have.size} of ${files.length} files are already on the server; sending ${parts.length}.`);
      }
      progress.value = 0;
      const result = await send(`/web/api/publish/${where}`, frame(header, parts));
      progress.value = 100;
      status.textContent = "";
      const link = document.createElement("a");
      link.href = result.url;
      link.textContent = `Published version ${result.version}`;
      status.append(
        link,
        `: ${result.files} files; sent ${size(result.sent_bytes)}, stored ${result.objects_stored} new of ${result.objects_total} chunks.`,
      );
      button.disabled = false;
    } catch (err) {
      fail(`Not published: ${err.message}`);
    }
  });
})();
