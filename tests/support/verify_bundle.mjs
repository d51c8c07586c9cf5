// An evidence bundle checked from docs/evidence.md alone, with node:crypto and no package: an outside
// auditor's reading of the format (decision 0094). Usage:
//   node tests/support/verify_bundle.mjs bundle.json --jwks proof-keys.json --jwks journal-keys.json
// Prints {"valid", "parts": {name: failure or null}} and exits 0 when every part holds, 1 otherwise.
import { createHash, createPublicKey, verify as ecVerify } from "node:crypto";
import { readFileSync } from "node:fs";

const P256_N = BigInt("0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");

export class Broken extends Error {}
const fail = (why) => {
  throw new Broken(why);
};
const ensure = (ok, why) => ok || fail(why);

// Canonical JSON: keys sorted (by code point, as Python sorts str), no spaces, UTF-8, no ASCII escaping.
function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort(byCodePoint);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  if (typeof value === "number" && !Number.isSafeInteger(value)) fail(`not an integer in signed JSON: ${value}`);
  return JSON.stringify(value);
}
export const canonicalBytes = (value) => Buffer.from(canonical(value), "utf8");
const sha256 = (...parts) => createHash("sha256").update(Buffer.concat(parts)).digest();
export const leafHash = (stream, entry) =>
  sha256(Buffer.from([0]), canonicalBytes([stream, entry])).toString("hex");
const blockHash = (block) => sha256(canonicalBytes(block)).toString("hex");

function b64url(text) {
  ensure(typeof text === "string" && /^[A-Za-z0-9_-]*$/.test(text), "not base64url");
  return Buffer.from(text, "base64url");
}
const HEX64 = /^[0-9a-f]{64}$/;

// JSON with no key twice in one object (JSON.parse keeps the last, as Python does; another reader the first).
export function noDuplicateKeys(text) {
  let i = 0;
  const ws = () => {
    while (" \t\n\r".includes(text[i])) i++;
  };
  const str = () => {
    const start = i++;
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i));
  };
  const value = (path) => {
    ws();
    if (text[i] === "{") {
      i++;
      const seen = new Set();
      ws();
      if (text[i] === "}") return i++;
      for (;;) {
        ws();
        const key = str();
        if (seen.has(key)) fail(`the file names the key ${JSON.stringify(key)} twice in ${path || "the top object"}`);
        seen.add(key);
        ws();
        i++; // :
        value(`${path}.${key}`);
        ws();
        if (text[i++] === "}") return;
      }
    } else if (text[i] === "[") {
      i++;
      ws();
      if (text[i] === "]") return i++;
      for (let n = 0; ; n++) {
        value(`${path}[${n}]`);
        ws();
        if (text[i++] === "]") return;
      }
    } else if (text[i] === '"') str();
    else while (i < text.length && !",]} \t\n\r".includes(text[i])) i++;
  };
  value("");
}

// Keys: the bank's sets (--jwks), never those the bundle carries.
export function keyRing(sets) {
  const ring = new Map();
  for (const set of sets)
    for (const jwk of set.keys ?? []) {
      ensure(jwk.kty === "EC" && jwk.crv === "P-256", `key ${jwk.kid}: not an EC P-256 key`);
      const had = ring.get(jwk.kid);
      ensure(!had || (had.jwk.x === jwk.x && had.jwk.y === jwk.y), `two keys under '${jwk.kid}'`);
      ring.set(jwk.kid, { jwk, key: createPublicKey({ key: jwk, format: "jwk" }) });
    }
  return ring;
}
function es256(ring, kid, bytes, signature, what, lowS = false) {
  const held = ring.get(kid) ?? fail(`${what}: no key '${kid}' in the JWK set`);
  const raw = b64url(signature);
  ensure(raw.length === 64, `${what}: a signature is 64 bytes (r || s), not ${raw.length}`);
  const s = BigInt(`0x${raw.subarray(32).toString("hex")}`);
  ensure(!lowS || s <= P256_N / 2n, `${what}: high-S signature (a copy someone altered)`);
  ensure(
    ecVerify("sha256", bytes, { key: held.key, dsaEncoding: "ieee-p1363" }, raw),
    `${what}: the signature does not verify under '${kid}'`,
  );
}

// RFC 9162 §2.1.3.2: the root from a leaf hash, its index, the tree size and the audit path.
export function rootFrom(leafHex, index, size, path) {
  ensure(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size, "leaf_index out of the tree");
  let fn = index;
  let sn = size - 1;
  let r = Buffer.from(leafHex, "hex");
  for (const p of path) {
    ensure(HEX64.test(p), "audit path: not a SHA-256 in hex");
    const node = Buffer.from(p, "hex");
    ensure(sn !== 0, "audit path longer than the tree");
    if (fn % 2 === 1 || fn === sn) {
      r = sha256(Buffer.from([1]), node, r);
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) (fn = Math.floor(fn / 2)), (sn = Math.floor(sn / 2));
    } else r = sha256(Buffer.from([1]), r, node);
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  ensure(sn === 0, "audit path shorter than the tree");
  return r.toString("hex");
}
export function merkleRoot(leaves) {
  if (leaves.length === 0) return sha256(Buffer.alloc(0));
  if (leaves.length === 1) return leaves[0];
  let split = 1;
  while (split * 2 < leaves.length) split *= 2;
  return sha256(Buffer.from([1]), merkleRoot(leaves.slice(0, split)), merkleRoot(leaves.slice(split)));
}

const BLOCK_FIELDS = ["at", "count", "first", "kid", "last", "number", "prev", "root"];

// Every block the bundle carries, checked once: signed, of the eight fields, one block per number, chained
// where two follow each other.
class Blocks {
  constructor(ring) {
    this.ring = ring;
    this.byNumber = new Map();
    this.kids = new Set();
  }
  add(signed, where) {
    const block = signed.block;
    ensure(block && typeof block === "object", `${where}: no block`);
    ensure(
      canonical(Object.keys(block).sort()) === canonical(BLOCK_FIELDS),
      `${where}: block ${block.number} has other fields than a block's`,
    );
    const known = this.byNumber.get(block.number);
    if (known) {
      ensure(canonical(known.block) === canonical(block), `${where}: two different blocks numbered ${block.number}`);
      return block;
    }
    es256(this.ring, block.kid, canonicalBytes(block), signed.signature, `${where}: block ${block.number}`);
    this.kids.add(block.kid);
    for (const [n, other] of [
      [block.number - 1, block],
      [block.number + 1, null],
    ]) {
      const before = other ? this.byNumber.get(n)?.block : block;
      const after = other ? block : this.byNumber.get(n)?.block;
      if (before && after)
        ensure(after.prev === blockHash(before), `block ${after.number} does not follow block ${before.number}`);
    }
    if (block.number === 1) ensure(block.prev === "0".repeat(64), "block 1: prev is not 64 zeros");
    this.byNumber.set(block.number, signed);
    return block;
  }
}

// One part: entries of one stream, numbered 1, 2, ... (or from a first seq for health and openings), each
// with its inclusion proof to a signed block of the part.
function checkPart(name, part, blocks, { suffix, fromOne, contiguous = true }) {
  ensure(part && typeof part.stream === "string", `${name}: no stream`);
  ensure(part.stream.endsWith(suffix), `${name}: the stream ${part.stream} is not one of ${suffix}`);
  const { entries, inclusion_proofs: proofs, signed_blocks: signed } = part;
  ensure(Array.isArray(entries) && Array.isArray(proofs) && entries.length === proofs.length, `${name}: entries and proofs differ in number`);
  const own = new Map();
  for (const s of signed ?? []) own.set(blocks.add(s, name).number, s.block);
  let last = null;
  entries.forEach((entry, i) => {
    const seq = Number(entry.seq);
    ensure(typeof entry.seq === "string" && String(seq) === entry.seq, `${name}: entry ${i + 1} has no seq`);
    if (i === 0) {
      if (fromOne) ensure(seq === 1 && entry.prev === "0-0", `${name}: does not start at entry 1`);
      else if (seq === 1) ensure(entry.prev === "0-0", `${name}: entry 1 names a predecessor`);
    } else if (contiguous) ensure(seq === last + 1, `${name}: entry ${last + 1} missing or out of place`);
    else ensure(seq > last, `${name}: entry ${seq} out of place`);
    last = seq;
    const proof = proofs[i] ?? fail(`${name}: entry ${seq} has no inclusion proof`);
    const leaf = leafHash(part.stream, entry);
    ensure(proof.leaf === undefined || proof.leaf === leaf, `${name}: entry ${seq}: its leaf is not the proof's`);
    const block = own.get(proof.block) ?? fail(`${name}: entry ${seq}: block ${proof.block} not in the part`);
    ensure(proof.tree_size === block.count, `${name}: entry ${seq}: tree_size is not block ${block.number}'s count`);
    ensure(
      rootFrom(leaf, proof.leaf_index, proof.tree_size, proof.audit_path) === block.root,
      `${name}: entry ${seq} is not in block ${block.number} (its root differs)`,
    );
  });
  return { entries, proofs, own };
}

// Decision 0147: `found` names each challenge once, oldest first (instants, then ids), and the selection is
// whole: every challenge the openings journal names in the period (and transaction) is found, and no other;
// the journal's numbering has no gap, nor one before its first entry when that entry is in the period.
function checkWhole(bundle) {
  const order = bundle.found.map((m) => [Date.parse(m.opened_at), m.challenge_id]);
  order.slice(1).forEach(([at, id], i) => {
    const [before, beforeId] = order[i];
    ensure(at > before || (at === before && id > beforeId), "user: the challenges found are not each once, oldest first");
  });
  const { since, until, transaction_id: tx } = bundle.selector;
  const inPeriod = (e) => (!since || Date.parse(e.at) >= Date.parse(since)) && (!until || Date.parse(e.at) < Date.parse(until));
  const entries = bundle.openings.entries;
  if (entries.length && Number(entries[0].seq) !== 1)
    ensure(!inPeriod(entries[0]), `user: openings journal entry ${Number(entries[0].seq) - 1} is missing`);
  const named = new Set(
    entries.filter((e) => e.event === "user.challenge" && inPeriod(e) && (!tx || e.transaction_id === tx)).map((e) => e.challenge_id),
  );
  const listed = new Set(bundle.found.map((m) => m.challenge_id));
  for (const id of named) ensure(listed.has(id), `user: ${id} is in the openings journal, not found`);
  for (const id of listed) ensure(named.has(id), `user: ${id} is found, not in the openings journal`);
}

// Decision 0091: each part ends where the server's signed statement says.
function checkExtents(bundle, parts, ring, blocks, subjectOf) {
  const stated = new Map();
  for (const signed of bundle.extents ?? []) {
    const said = signed.statement ?? fail("extent: no statement");
    ensure(said.type === "sesame.bundle-extent.v1", "extent: not a statement of extent");
    es256(ring, said.kid, canonicalBytes(said), signed.signature, "extent");
    blocks.kids.add(said.kid);
    for (const name of Object.keys(said.streams ?? {}))
      if (parts[name]) {
        ensure(!stated.has(name), `${name}: stated twice`);
        stated.set(name, said);
      }
  }
  for (const [name, part] of Object.entries(parts)) {
    const said = stated.get(name) ?? fail(`${name}: the bundle carries no signed statement of its extent`);
    ensure(canonical(said.subject) === canonical(subjectOf(name)), `${name}: the statement is another subject's`);
    const extent = said.streams[name];
    ensure(extent.stream === part.stream, `${name}: the statement names another stream`);
    let ends = { seq: 0, leaf: "", block: 0 };
    for (let i = part.entries.length - 1; i >= 0; i--)
      if (part.inclusion_proofs[i]) {
        const e = part.entries[i];
        ends = { seq: Number(e.seq), leaf: leafHash(part.stream, e), block: part.inclusion_proofs[i].block };
        break;
      }
    ensure(
      ends.seq === extent.seq && ends.leaf === extent.leaf && ends.block === extent.block,
      `${name}: the bundle ends at entry ${ends.seq} of ${part.stream}, the server's signed statement of its extent at entry ${extent.seq} (block ${extent.block})`,
    );
    for (const s of part.signed_blocks ?? []) {
      const b = s.block;
      ensure(
        b.number < said.head.number || (b.number === said.head.number && blockHash(b) === said.head.hash),
        `${name}: block ${b.number} is past the stated head ${said.head.number}`,
      );
    }
  }
}

function checkProof(op, ring, blocks) {
  const named = op.journal.filter((e) => e.event === "challenge.proof");
  if (!op.proof) {
    ensure(named.length === 0, "proof: the journal names a proof the bundle does not hold");
    return;
  }
  const [h, c, s] = String(op.proof.jws).split(".");
  const header = JSON.parse(b64url(h).toString("utf8"));
  const claims = JSON.parse(b64url(c).toString("utf8"));
  ensure(header.alg === "ES256", "proof: not ES256");
  ensure(canonical(header) === b64url(h).toString("utf8"), "proof: header not canonical");
  ensure(canonical(claims) === b64url(c).toString("utf8"), "proof: claims not canonical");
  es256(ring, header.kid, Buffer.from(`${h}.${c}`, "ascii"), s, "proof", true);
  blocks.kids.add(header.kid);
  ensure(canonical(header) === canonical(op.proof.header), "proof: its header is not the one it signs");
  ensure(canonical(claims) === canonical(op.proof.claims), "proof: its claims are not those it signs");
  ensure(claims.challenge_id === op.challenge_id, "proof: another challenge's");
  const issued = named.at(-1) ?? fail("proof: the journal names no proof");
  ensure(issued.jti === claims.jti && issued.kid === header.kid, "proof: not the one the journal names");
  const opened = op.journal.find((e) => e.event === "challenge.opened");
  const verified = op.journal.find((e) => e.event === "challenge.verification" && e.outcome === "verified");
  ensure(verified, "proof: the journal has no verified attempt");
  ensure(
    claims.sub === opened.user_id && claims.client_id === opened.client_id && claims.op === opened.op && claims.op_digest === opened.op_digest,
    "proof: its claims are not the opening's",
  );
  ensure(claims.attempts === Number(verified.attempts), "proof: attempts differ from the journal's");
  ensure(claims.iat === Math.floor(Date.parse(verified.at) / 1000), "proof: iat is not the verified attempt's time");
}

function checkOperation(op, ring, blocks, user) {
  const opened = op.journal?.find((e) => e.event === "challenge.opened") ?? fail("journal: no opening");
  const owner = user ?? opened.user_id;
  ensure(opened.user_id === owner, "another user's operation");
  ensure(opened.challenge_id === op.challenge_id, "journal: another challenge's opening");
  const journal = {
    stream: op.journal_stream,
    entries: op.journal,
    inclusion_proofs: op.inclusion_proofs,
    signed_blocks: op.signed_blocks,
  };
  checkPart("journal", journal, blocks, { suffix: `:ch:${op.challenge_id}:journal`, fromOne: true });
  for (const e of op.journal) ensure(e.challenge_id === op.challenge_id, `journal: entry ${e.seq} is another challenge's`);
  // The seals given: the stream's leaves, in order, each seal signed, its root and count its leaves'.
  const given = op.journal_seals?.given ?? fail("journal: no seals given");
  ensure(given.stream === op.journal_stream, "journal: the seals are another stream's");
  const sealed = [];
  for (const seal of given.seals) {
    const block = blocks.add(seal, "journal_seals");
    const leaves = seal.leaves.map(([, , leaf]) => Buffer.from(leaf, "hex"));
    ensure(leaves.length === block.count, `block ${block.number}: count is not its leaves'`);
    ensure(merkleRoot(leaves).toString("hex") === block.root, `block ${block.number}: root is not its leaves'`);
    for (const [stream, seq, leaf] of seal.leaves) if (stream === given.stream) sealed.push([seq, leaf]);
  }
  sealed.forEach(([seq, leaf], i) => {
    const entry = op.journal[i] ?? fail(`journal: entry ${seq} is sealed but is missing`);
    ensure(Number(entry.seq) === seq && leafHash(given.stream, entry) === leaf, `journal: entry ${seq} differs from its seal`);
  });
  const parts = { journal };
  const subjects = { journal: { challenge_id: op.challenge_id } };
  for (const [name, suffix, fromOne] of [
    ["lifecycle", `:journal:${owner}`, true],
    ["health", ":health:journal", false],
  ]) {
    const part = op[name] ?? fail(`${name}: missing`);
    checkPart(name, part, blocks, { suffix, fromOne });
    parts[name] = part;
  }
  const userSaid = (op.extents ?? []).find((x) => x.statement?.streams?.lifecycle)?.statement;
  checkExtents(op, parts, ring, blocks, (name) =>
    name === "journal" ? subjects.journal : { ...(userSaid?.subject ?? {}), user_id: owner },
  );
  // One assembly (decision 0094): the user's statement is of the hour around the journal, not older.
  const journalSaid = op.extents.find((x) => x.statement?.streams?.journal).statement;
  const times = op.journal.map((e) => Date.parse(e.at));
  const hour = 3600 * 1000;
  ensure(
    Date.parse(userSaid.subject.since) === Math.min(...times) - hour &&
      Date.parse(userSaid.subject.until) === Math.max(...times) + hour &&
      userSaid.subject.transaction_id === "",
    "lifecycle: the statement is of another query than the hour around this journal",
  );
  ensure(userSaid.head.number >= journalSaid.head.number, "lifecycle: the statement is older than the journal's");
  const notes = op.health.entries;
  ensure(
    !notes.length || notes[0].seq === "1" || Date.parse(notes[0].at) < Date.parse(userSaid.subject.since),
    "health: the last note before the period is missing",
  );
  // The bundle's own key sets hold, under the bank's kids, the bank's keys.
  for (const set of [op.jwks, op.journal_jwks, op.journal_seals?.given?.jwks])
    for (const k of set?.keys ?? []) {
      const bank = ring.get(k.kid)?.jwk;
      ensure(!bank || (bank.x === k.x && bank.y === k.y), `keys_differ: the bundle carries another key under '${k.kid}'`);
    }
  checkProof(op, ring, blocks);
}

export function verifyBundle(text, jwksSets) {
  const ring = keyRing(jwksSets);
  const blocks = new Blocks(ring);
  const result = { valid: true, parts: {} };
  const run = (name, check) => {
    try {
      check();
      result.parts[name] = null;
    } catch (error) {
      if (!(error instanceof Broken) && !(error instanceof TypeError)) throw error;
      result.parts[name] = error.message;
      result.valid = false;
    }
  };
  let bundle;
  run("file", () => {
    noDuplicateKeys(text);
    bundle = JSON.parse(text);
  });
  if (!bundle) return result;
  if (bundle.operations) {
    const user = bundle.user_id;
    run("user", () => {
      ensure(bundle.selector?.user_id === user, "user: the selector is another user's");
      const found = bundle.found.map((f) => f.challenge_id);
      const held = bundle.operations.map((op) => op.challenge_id);
      ensure(canonical(found) === canonical(held), "user: the operations are not those found, in order");
      bundle.found.forEach((m, i) => {
        const op = bundle.operations[i];
        const opened = op.journal.find((e) => e.event === "challenge.opened") ?? {};
        ensure(
          Date.parse(m.opened_at) === Date.parse(opened.at) &&
            (m.transaction_id ?? "") === (op.operation_as_authorised?.transaction_id ?? ""),
          `found: ${m.challenge_id} is not as its opening says`,
        );
      });
      const lifecycle = checkPart("lifecycle", bundle.lifecycle, blocks, { suffix: `:journal:${user}`, fromOne: true });
      void lifecycle;
      checkPart("openings", bundle.openings, blocks, { suffix: `:openings:${user}`, fromOne: false });
      checkWhole(bundle);
      checkExtents(bundle, { lifecycle: bundle.lifecycle, openings: bundle.openings }, ring, blocks, () => bundle.selector);
    });
    bundle.operations.forEach((op, i) => run(`operation ${i + 1}`, () => checkOperation(op, ring, blocks, user)));
  } else run("operation", () => checkOperation(bundle, ring, blocks, null));
  result.keys_used = Object.fromEntries(
    [...blocks.kids].sort().map((kid) => [kid, ring.get(kid) ? thumbprint(ring.get(kid).jwk) : null]),
  );
  return result;
}

// RFC 7638 thumbprint of an EC key: SHA-256 of {"crv","kty","x","y"} in that order, base64url.
export const thumbprint = (jwk) =>
  createHash("sha256")
    .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }))
    .digest("base64url");

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const sets = [];
  let file;
  for (let i = 0; i < args.length; i++)
    if (args[i] === "--jwks") sets.push(JSON.parse(readFileSync(args[++i], "utf8")));
    else file = args[i];
  const result = verifyBundle(readFileSync(file, "utf8"), sets);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(result.valid ? 0 : 1);
}
