-- Start a challenge, in one step (docs/decisions/0014, 0025): read the user; refuse while it is not ACTIVE,
-- blocked after wrong codes in a row at that instant (a start racing the fifth wrong code cannot slip a
-- challenge past the block's voiding), cooling after a number change (operations that move money only), or
-- when its number is outside the countries codes go to, or for a change of number to the stored number
-- itself (ChangeSecurePhone could only refuse it: compared here, where no change of number can come between
-- the reading and the opening); answer a retried request id with the challenge it opened (no second unit, no
-- second SMS); take one unit of each send budget, named by the challenge id (decision 0101); index the
-- challenge among the user's pending ones (so that a suspension or a number change that comes later finds and voids it); store
-- it OPEN until expiry + retention for the user's current secure number, and queue its SMS in the outbox. Never overwrite, never reuse an
-- id. A refusal writes nothing, so a unit is taken if and only if the challenge opens (docs/decisions/0010).
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream, KEYS[3] user hash, KEYS[4] the user's pending
-- challenges (sorted set by expiry), KEYS[5] the request id's claim: all in the user's {s:<n>} slot;
-- KEYS[6 .. 5+b] the declared send budgets (the user's in the same slot; the caller's and global in their
-- {sb:<kind>:<key>} slots); KEYS[6+b] the SMS outbox stream of the user's shard ({s:<n>}), where the SMS is queued. The number's budget is named here from the stored number (SHA-1 of a domain tag
-- and the number, as BudgetSubject.phone), a key Redis Cluster would want declared: this script spans those
-- slots on purpose, so that a unit is spent if and only if the SMS goes (docs/decisions/0019, 0025).
-- ARGV, in order: purge time (unix ms, from the challenge's own expiry, not Redis time); time the units are
-- taken (unix ms); index entries expired before this are dropped (unix ms); the number the code goes to
-- ('' : the user's stored one, whatever it is); the challenge id; its expiry (unix ms); b = count of
-- declared budgets, then each one's limit and window (ms); the position (0-based, -1 for none) of the
-- number's budget among them, its limit, window, key prefix and hash tag; the Start's W3C traceparent
-- ('' none, carried in the outbox entry: decision 0040); '1' when a cooling number holds
-- the operation back; the calling codes every number of which may be sent to (',+33,+49,', or '*' for
-- any); the prefix of a challenge hash's name in this place (for the request's earlier challenge); the
-- operation digest (hex); '+' when the rules decide here, their program in the script's text
-- (_risk_rules.lua's RISK_PROGRAM, decision 0076), '-' when they decide nothing here (else
-- KEYS[7+b .. 12+b] are the user's memory's parts, see _risk_memory.lua, and KEYS[13+b] the user's journal,
-- where a DENY is journaled; _risk_rules.lua, decision 0045); the question to the rules (JSON, sesame.clients.risk_program.question;
-- '-' with the program); the new number of a change_phone ('' for another operation); n = count of hash
-- field/value elements, then n hash elements, then journal pairs.
-- Returns {'opened', client_id, phone, locale}, {'earlier', hgetall} (the request id's challenge),
-- {'other_operation'} (the request id was used for another operation), {'not_found'} (no such user),
-- {'not_active', status}, {'blocked', blocked_until (unix ms)}, {'cooling', cooling_until (unix ms)},
-- {'destination', phone} (not every number of its calling code may be sent to: Start checks its region),
-- {'phone_changed'}, {'phone_unchanged'} (a change_phone to the stored number), {'exists'} (the id was
-- already used: the journal outlives the hash),
-- {'exhausted', budget index (0-based), wait_ms}, {'open_full', wait_ms} (the user has IN_FLIGHT_READ
-- challenges open: wait until the first expires), {'risk_denied', kept assessment} (journaled in the user's
-- sealed journal, decision 0042; nothing else written; a 3rd element '1' when the request id was denied
-- before: its retry, journaled and counted nothing more) or
-- {'sim_number', phone} (the SIM-swap answer is about another number than the stored one: asked again).
-- 'opened' has a 5th element, the kept assessment, when the rules decided.
--#include _send_budgets.lua
--#include _out_of_memory.lua
--#include _mask.lua
--#include _risk_memory.lua
--#include _risk_rules.lua
--#include _journal_hourly.lua
local challenge, journal, user, pending, request = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local at = 0
local function arg()
  at = at + 1
  return ARGV[at]
end
-- One argument per line: Lua leaves the order of evaluation within an expression list unspecified.
local purge_at = arg()
local now = tonumber(arg())
local drop_before = arg()
local number = arg()
local challenge_id = arg()
local expires_at = arg()
local budgets = tonumber(arg())
local first_budget = at + 1
local outbox = KEYS[6 + budgets]
at = at + 2 * budgets
local phone_at = tonumber(arg())
local phone_limit = arg()
local phone_window = arg()
local phone_prefix = arg()
local phone_tag = arg()
-- The W3C traceparent of the Start ('' none), carried in the outbox entry so that its dispatch joins the
-- Start's trace (decision 0040); placed here, before the cooling flag, among the arguments above.
local trace = arg()
local cooled = arg()
local codes = arg()
local claim = arg()
local challenge_prefix = arg()
local op_digest = arg()
local risk_program = arg()
local risk_question = arg()
local change_to = arg()

local h = redis.call('HMGET', user, 'status', 'phone', 'blocked_until', 'cooling_until', 'client_id', 'locale',
                     'status_changes', 'phone_changes')
local blocked_until = tonumber(h[3] or '0')
local cooling_until = tonumber(h[4] or '0')
if not blocked_until or not cooling_until then
  return redis.error_reply('CORRUPT user record')  -- never read as no block (as record_verification.lua)
end
if not h[1] then
  return {'not_found'}
elseif h[1] ~= 'active' then
  return {'not_active', h[1]}
elseif now < blocked_until then
  return {'blocked', blocked_until}
elseif cooled == '1' and now < cooling_until then
  return {'cooling', cooling_until}
end
local phone = h[2]
if number ~= '' and phone ~= number then
  return {'phone_changed'}
end
if number == '' and codes ~= '*' then
  local whole = false
  for k = 2, 4 do
    if string.find(codes, ',' .. string.sub(phone, 1, k) .. ',', 1, true) then whole = true end
  end
  if not whole then
    return {'destination', phone}
  end
end
if change_to == phone then
  return {'phone_unchanged'}
end
if claim == '1' then
  local owner = redis.call('GET', request)
  if owner and string.sub(owner, 1, 1) == '-' then
    -- Denied before (below): for this operation, the rules decide again; for another, a conflict, as for a
    -- challenge's claim (a bare '-' was written before the claim named its operation).
    if owner ~= '-' and owner ~= '-' .. op_digest then
      return {'other_operation'}
    end
  elseif owner then
    local earlier = challenge_prefix .. owner
    local digest = redis.call('HGET', earlier, 'op_digest')
    if digest == op_digest then
      return {'earlier', redis.call('HGETALL', earlier)}
    elseif digest then
      return {'other_operation'}
    end
    -- Claimed by a challenge since purged: the claim outlived it, the request opens a new one.
  end
end
-- After the user's admission and the request id's earlier answer, before anything is written: the signals
-- and the rules on the memory as it is now, in this step (decision 0045). A DENY writes its denial only.
local kept, risk_entry
if risk_program ~= '-' then
  local x = cjson.decode(risk_question)
  local program = risk_program_for(x.op)
  if x.sim_for and x.sim_for ~= phone then
    return {'sim_number', phone}
  end
  local parts = {}
  for i = 7 + budgets, 12 + budgets do parts[#parts + 1] = KEYS[i] end
  local open = {pending = pending, prefix = challenge_prefix, digest = op_digest}
  local decision, codes, matched, added = risk_assess(program, risk_signals(user, parts, x, open), x)
  kept = risk_kept(program, decision, codes, matched, added)
  risk_entry = {'risk_decision', RISK_DECISIONS[decision], 'risk_reasons', table.concat(codes, ','),
    'risk_rules', table.concat(matched, ','), 'risk_rules_version', program.version}
  if decision == 4 then
    -- The DENY's entry (redis_records.denial_head, then the fields below; decision 0042): sealed evidence.
    local denial = {}
    for _, v in ipairs(x.denied) do denial[#denial + 1] = v end
    for _, v in ipairs({'phone', mask_phone(phone), 'decision', 'deny', 'reasons', risk_entry[4],
      'rules', risk_entry[6], 'rules_version', program.version}) do denial[#denial + 1] = v end
    for _, v in ipairs(x.context) do denial[#denial + 1] = v end
    local denied = '-' .. op_digest
    if claim == '1' then
      -- A request id is denied once: its retries are answered the same and journal nothing more (the
      -- claim, '-' and the operation's digest, names no challenge: a later try of the operation whose rules
      -- allow opens one and takes the claim).
      local claimed = redis.call('GET', request)
      -- '1': a retry, counted nothing more (one attempt, decision 0050).
      if claimed == denied or claimed == '-' then return {'risk_denied', kept, '1'} end
    end
    -- A denial charges no budget: only the first 20 of the user's hour are journaled, later ones counted in
    -- the user hash, and the count sealed with the next denial journaled (decision 0050). Its request id
    -- is claimed only with a denial journaled: a claim a call, kept until the code's lifetime, let a loop of
    -- denied Starts with new request ids write a key a call without a bound (decision 0137).
    if journal_hourly(user, 'denials', 20, KEYS[13 + budgets], denial, now) and claim == '1' then
      redis.call('SET', request, denied, 'PX', lifetime_to(expires_at, now))
    end
    return {'risk_denied', kept}  -- nothing else written but the count, nothing sent (docs/risk.md)
  end
end
if redis.call('EXISTS', challenge, journal) > 0 then
  return {'exists'}
end
-- The budgets in the order Start reports them: the declared ones, the number's at its position.
local sends, limits = {}, {}
for i = 0, budgets do
  if i == phone_at then
    sends[#sends + 1] = phone_prefix .. string.sub(redis.sha1hex(phone_tag .. phone), 1, 32) .. '}:sends'
    table.insert(limits, phone_limit)
    table.insert(limits, phone_window)
  end
  if i < budgets then
    sends[#sends + 1] = KEYS[6 + i]
    table.insert(limits, ARGV[first_budget + 2 * i])
    table.insert(limits, ARGV[first_budget + 2 * i + 1])
  end
end
-- At most IN_FLIGHT_READ of the user's challenges open at once (decision 0095): the in-flight read above sees
-- every one, and a Start past it waits, as for a spent budget, until the first of them expires.
if redis.call('ZCOUNT', pending, '(' .. now, '+inf') >= IN_FLIGHT_READ then
  local first = redis.call('ZRANGEBYSCORE', pending, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return {'open_full', tonumber(first[2]) - now}
end
local refusal = budget_refusal(sends, limits, now)
if refusal then
  return refusal
end
-- The budgets' ZREMRANGEBYSCORE, a write that frees, comes first: out of memory every Start passed whole
-- and Redis grew past maxmemory without bound (decision 0109). Refused here, before anything is written.
refuse_out_of_memory(request)
take_budgets(sends, limits, now, challenge_id)  -- named after its SMS: its hold's name (decision 0101)
local n = tonumber(arg())
local fields, entry = {}, {}
for i = at + 1, at + n do fields[#fields + 1] = ARGV[i] end
for i = at + n + 1, #ARGV do entry[#entry + 1] = ARGV[i] end
if kept then
  fields[#fields + 1] = 'risk'
  fields[#fields + 1] = kept
  for _, v in ipairs(risk_entry) do entry[#entry + 1] = v end
end
if number == '' then
  local masked = mask_phone(phone)
  for _, v in ipairs({'client_id', h[5], 'phone', phone, 'locale', h[6]}) do fields[#fields + 1] = v end
  for _, v in ipairs({'client_id', h[5], 'phone', masked}) do entry[#entry + 1] = v end
end
-- The user's changes of status and of number counted so far: the outbox's take withholds the code when
-- either moved since, an order no clock decides (decision 0056). A user without them never changed since.
fields[#fields + 1] = 'user_changes'
fields[#fields + 1] = (h[7] or '0') .. ':' .. (h[8] or '0')
if claim == '1' then
  redis.call('SET', request, challenge_id, 'PX', lifetime_to(expires_at, now))
end
redis.call('ZREMRANGEBYSCORE', pending, '-inf', drop_before)
redis.call('ZADD', pending, expires_at, challenge_id)
redis.call('HSET', challenge, unpack(fields))
redis.call('PEXPIREAT', challenge, purge_at)  -- a day past the code's expiry: absolute, far beyond any skew (0103)
journal_append(journal, entry)
-- The SMS, queued with the challenge it carries the code of (never the code nor the text: the dispatcher
-- computes them when it sends, docs/decisions/0025).
local queued = {'challenge_id', challenge_id, 'send', 'start', 'queued_at', now}
if trace ~= '' then
  queued[#queued + 1] = 'trace'
  queued[#queued + 1] = trace
end
-- NOMKSTREAM: no stream, no entry; the first SMS ever queued makes it with its group (one command where an
-- EXISTS came before each XADD; decision 0061).
if not redis.call('XADD', outbox, 'NOMKSTREAM', '*', unpack(queued)) then
  redis.call('XGROUP', 'CREATE', outbox, 'dispatchers', '0', 'MKSTREAM')
  redis.call('XADD', outbox, '*', unpack(queued))
end
return {'opened', h[5], phone, h[6], kept}
