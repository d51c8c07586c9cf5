// Interoperability proof: a Node.js client built only from proto/sesame/api/v1/*.proto works against a real
// `sesame serve`. The protos are loaded at run time by @grpc/proto-loader (no generated code, no reflection) and
// called with @grpc/grpc-js: enrol a user, read it back (masked phone), start a credit-transfer challenge (int64
// amount as a string), read the code from the console SMS file, then see every verification outcome (changed
// amount, wrong code, right code, replay) and decode the rich error of a bad IBAN (google.rpc.Status with a
// BadRequest detail, from the grpc-status-details-bin trailer). Prints one JSON summary line; exits 1 on any
// mismatch. Health is checked from Python: no health.proto ships with the Python or Node packages we pin.
//
// usage: NODE_PATH=.tools/node_modules node client.mjs --target 127.0.0.1:50051 --sms-file var/sms.jsonl \
//          --protos proto --googleapis <dir holding google/rpc/*.proto>
import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

// ESM `import` ignores NODE_PATH; require() honours it, so the test can point at .tools/node_modules.
const require = createRequire(import.meta.url);
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const { values: args } = parseArgs({
  options: { target: { type: "string" }, "sms-file": { type: "string" }, protos: { type: "string" },
    googleapis: { type: "string" } },
});
if (!args.target || !args["sms-file"] || !args.protos || !args.googleapis) {
  console.error("usage: client.mjs --target HOST:PORT --sms-file FILE --protos DIR --googleapis DIR");
  process.exit(2);
}
// keepCase: fields as in the .proto (snake_case); longs/enums as strings: int64 keeps every digit, enums read by name.
const LOAD = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const files = ["authentication_service", "enrollment_service"].map((f) => `sesame/api/v1/${f}.proto`);
// google/protobuf/*.proto (timestamp, any, duration) are bundled in protobufjs, under proto-loader: no include.
const api = grpc.loadPackageDefinition(protoLoader.loadSync(files, { ...LOAD, includeDirs: [args.protos] }))
  .sesame.api.v1;
const creds = grpc.credentials.createInsecure();
const enrol = new api.EnrollmentService(args.target, creds);
const auth = new api.AuthenticationService(args.target, creds);

// Rich error details are plain protobuf messages: protobufjs (what proto-loader is built on) decodes them.
const rpcTypes = new protobuf.Root();
rpcTypes.resolvePath = (_origin, target) => path.join(args.googleapis, target);
rpcTypes.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
const Status = rpcTypes.lookupType("google.rpc.Status");
const BadRequest = rpcTypes.lookupType("google.rpc.BadRequest");

/** One unary call as a promise, with a 5 s deadline. */
function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 5000 }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The code of the SMS sent for `challengeId`: the digits after "code " in the text (waits at most 5 s). */
async function readCode(challengeId) {
  for (let tries = 0; tries < 50; tries += 1) {
    if (existsSync(args["sms-file"])) {
      const lines = readFileSync(args["sms-file"], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
      const sms = lines.find((m) => m.challenge_id === challengeId);
      if (sms) return /code (\d+)/.exec(sms.text)[1];
    }
    await sleep(100);
  }
  throw new Error(`no SMS for ${challengeId} in ${args["sms-file"]}`);
}

const seen = {};
const failures = [];
/** Record what was seen under `name`, and a failure when it is not what the API guide promises. */
function expect(name, actual, expected) {
  seen[name] = actual;
  if (actual !== expected) failures.push({ name, actual, expected });
}

const userId = `node-${process.pid}-${Date.now()}`;
const payee = { name: "Jean DUPONT", iban: "FR76 3000 6000 0112 3456 7890 189" };
const transfer = (amountMinor, iban = payee.iban) => ({
  credit_transfer: { amount: { currency: "EUR", amount_minor: amountMinor }, payee: { ...payee, iban },
    transaction_id: `tx-${userId}` },
});
// Above 2^31 on purpose: the amount crosses the wire as int64 and comes back as the same decimal string.
const AMOUNT = "2500000000";
const context = { ip: "203.0.113.7", device_id: "node-interop", session_id: userId };

async function verify(challengeId, code, amountMinor) {
  return call(auth, "VerifyChallenge", { challenge_id: challengeId, code, operation: transfer(amountMinor), context });
}

async function start() {
  return call(auth, "StartChallenge", { user_id: userId, operation: transfer(AMOUNT), context });
}

async function main() {
  const enrolled = await call(enrol, "EnrollUser", { user_id: userId, client_id: "node-client",
    secure_phone: "+33612345678" });
  expect("enrolled_status", enrolled.user.status, "USER_STATUS_ACTIVE");
  const user = await call(enrol, "GetUser", { user_id: userId });
  expect("masked_phone", user.user.masked_phone, "+33*******78");

  // A changed amount voids the code (dynamic linking).
  const first = await start();
  expect("delivery_state", first.delivery_state, "DELIVERY_STATE_QUEUED");
  const described = await call(auth, "GetChallenge", { challenge_id: first.challenge_id });
  expect("operation_kind", described.challenge.operation.kind, "credit_transfer");
  expect("amount_minor", described.challenge.operation.credit_transfer.amount.amount_minor, AMOUNT);
  const firstCode = await readCode(first.challenge_id);
  const mismatch = await verify(first.challenge_id, firstCode, "2500000001");
  expect("changed_amount", mismatch.result, "VERIFY_RESULT_OPERATION_MISMATCH");

  // A new challenge: wrong code, right code, replay.
  const second = await start();
  const code = await readCode(second.challenge_id);
  const wrongCode = String((Number(code[0]) + 1) % 10) + code.slice(1);
  const wrong = await verify(second.challenge_id, wrongCode, AMOUNT);
  expect("wrong_code", wrong.result, "VERIFY_RESULT_WRONG_CODE");
  expect("attempts_left", wrong.attempts_left, 2);
  expect("right_code", (await verify(second.challenge_id, code, AMOUNT)).result, "VERIFY_RESULT_VERIFIED");
  expect("replay", (await verify(second.challenge_id, code, AMOUNT)).result, "VERIFY_RESULT_ALREADY_USED");

  // A bad IBAN checksum (77 instead of 76): INVALID_ARGUMENT, with a BadRequest naming the field.
  const badIban = "FR77 3000 6000 0112 3456 7890 189";
  try {
    await call(auth, "StartChallenge", { user_id: userId, operation: transfer(AMOUNT, badIban) });
    expect("bad_iban_status", "OK", "INVALID_ARGUMENT");
  } catch (err) {
    if (err.code === undefined) throw err;
    expect("bad_iban_status", grpc.status[err.code], "INVALID_ARGUMENT");
    const [details] = err.metadata.get("grpc-status-details-bin");
    const status = Status.decode(details);
    expect("bad_iban_details_code", status.code, grpc.status.INVALID_ARGUMENT);
    const badRequests = status.details.filter((d) => d.type_url === "type.googleapis.com/google.rpc.BadRequest");
    const fields = badRequests.flatMap((d) => BadRequest.decode(d.value).field_violations.map((v) => v.field));
    expect("bad_iban_fields", fields.join(","), "operation.credit_transfer.payee.iban");
  }
}

let crashed = null;
try {
  await main();
} catch (err) {
  crashed = `${err.constructor.name}: ${err.message}`;
} finally {
  enrol.close();
  auth.close();
}
const ok = crashed === null && failures.length === 0;
console.log(JSON.stringify({ ok, seen, failures, crashed }));
process.exit(ok ? 0 : 1);
