-- The risk signals and rules, in a script's step (docs/risk.md): the same signals as risk_signals.signals and the
-- same decision as RuleSet.assess, from the user's memory (_risk_memory.lua) and the rules compiled at boot to a
-- program in Lua (sesame.clients.risk_program, RISK_PROGRAM below). A piece, not a script.
-- The two evaluators are held equal by tests/contracts/test_risk_rules_lua.py (random memories, operations
-- and rule sets, through a real Redis): instants are unix ms on both sides. What only the caller knows (the
-- operator's SIM-swap answer, the bank's forwarded summary) comes computed, in the question's `given`.
-- The signals are computed when a clause first reads one (decision 0051): a rule stops at its first clause
-- that fails, most at their operation's, so a Start reads only the parts of the memory its rules get to, and
-- of a part only what the signal needs (a member's instant, the members in the signal's window).
local HOUR = 3600000

-- The rules' program, one function per kind of operation that builds its section (risk_program.program, a Lua
-- table constructor): the script Start runs for a rule set has it in place of the `{}` below, put there by
-- Scripts (`run`'s `program`), so that its constants are compiled once, when Redis loads the script, where a
-- JSON program decoded at each call cost ~50 µs a Start (decision 0076). Empty in the script without rules.
local RISK_PROGRAM = {}  -- the program

local function hours(since, now)
  local h = (now - since) / HOUR
  if h < 0 then return 0.0 end
  return h
end

local function median(sorted)
  local n = #sorted
  if n % 2 == 1 then return sorted[(n + 1) / 2] end
  return (sorted[n / 2] + sorted[n / 2 + 1]) / 2
end

-- Most payees added within one hour: the instants ascending, a window sliding over them (the first of equal
-- instants counts them all, so the maximum is the one of "for each a, the b with a <= b < a + 1 h").
local function burst_of(sorted)
  local best, j, n = 0, 1, #sorted
  for i = 1, n do
    if j < i then j = i end
    while j <= n and sorted[j] < sorted[i] + HOUR do j = j + 1 end
    if j - i > best then best = j - i end
  end
  return best
end

-- `new_<x>`: only when the caller named one and some were seen before (a first use is not news).
local function new_of(s, name, key, member)
  if member == '' then return end
  if risk_seen_at(key, member) ~= nil then s[name] = false
  elseif risk_any(key) then s[name] = true end
end

-- The user's open transfers and new beneficiaries (decision 0090), read once: from its pending index (its open
-- challenges by expiry, decision 0093; the IN_FLIGHT_READ unexpired ones that expire last) those whose hash has
-- `risk_open` (`<op>` or `add_beneficiary:<payee>`), none of the operation's own digest, one per digest (the
-- latest opened), as risk_signals.counted_in_flight. Each {op, payee ('' none), at (opened, unix ms)}.
local IN_FLIGHT_READ = 64  -- risk_signals.IN_FLIGHT_READ: a caller with a large send budget costs no more
local function in_flight(m)
  if m.flying then return m.flying end
  local o, latest, flying = m.open, {}, {}
  if o then
    local live = redis.call('ZREVRANGEBYSCORE', o.pending, '+inf', '(' .. string.format('%.0f', m.now), 'LIMIT', 0,
      IN_FLIGHT_READ)
    for _, id in ipairs(live) do
      local h = redis.call('HMGET', o.prefix .. id, 'status', 'risk_open', 'op_digest', 'created_at')
      if h[1] == 'open' and h[2] and h[3] ~= o.digest then
        local at, kept = tonumber(h[4]), latest[h[3]]
        if kept == nil or kept.at < at then
          local op, payee = string.match(h[2], '^([^:]*):?(.*)$')
          latest[h[3]] = {op = op, payee = payee, at = at}
        end
      end
    end
  end
  for _, f in pairs(latest) do flying[#flying + 1] = f end
  m.flying = flying
  return flying
end

-- How many of the open operations (of kind `op`, any when nil) were opened less than `window` ago.
local function in_flight_within(m, op, window)
  local n = 0
  for _, f in ipairs(in_flight(m)) do
    if (op == nil or f.op == op) and m.now - f.at < window then n = n + 1 end
  end
  return n
end

-- Each group of signals the memory gives, computed at once, by the names it sets (some it may leave unset:
-- a signal with nothing to say). m: the question's fields and the memory's parts, see risk_signals.
local LOADERS = {
  user = function(s, m)
    local h = redis.call('HMGET', m.user, 'failures', 'blocks', 'phone_changed_at')
    s.wrong_codes_in_a_row = tonumber(h[1] or '0')
    s.blocks_in_a_row = tonumber(h[2] or '0')
    local changed = tonumber(h[3] or '0')
    if changed ~= 0 then s.phone_changed_hours = hours(changed, m.now) end
  end,
  added = function(s, m)  -- payees added in the last 72 hours, or being added (this one, for an add_beneficiary)
    local flat, last, recent = risk_since(m.parts[2], m.now - 72 * HOUR, true), {}, {}
    for i = 2, #flat, 2 do last[flat[i - 1]] = tonumber(flat[i]) end
    for _, f in ipairs(in_flight(m)) do
      if f.payee ~= '' and m.now - f.at < 72 * HOUR and (last[f.payee] == nil or last[f.payee] < f.at) then
        last[f.payee] = f.at
      end
    end
    for _, at in pairs(last) do recent[#recent + 1] = at end
    if m.x.op == 'add_beneficiary' then recent[#recent + 1] = m.now end
    table.sort(recent)
    local day = 0
    for _, at in ipairs(recent) do if m.now - at < 24 * HOUR then day = day + 1 end end
    s.payees_added_24h, s.payee_burst = day, burst_of(recent)
  end,
  paid = function(s, m)
    if m.transfer then s.payee_paid_before = risk_seen_at(m.parts[1], m.x.payee) ~= nil end
  end,
  payee_added = function(s, m)
    local at = m.added_at()
    if at then s.payee_added_hours = hours(at, m.now) end
  end,
  transfers = function(s, m)
    local t24 = 0
    m.ops_24h = risk_since(m.parts[5], m.now - 24 * HOUR)
    for _, key in ipairs(m.ops_24h) do
      if string.sub(key, 1, 16) == 'credit_transfer:' then t24 = t24 + 1 end
    end
    s.transfers_24h = t24 + in_flight_within(m, 'credit_transfer', 24 * HOUR) + (m.transfer and 1 or 0)
  end,
  sensitive = function(s, m)
    -- The day's operations read already (transfers): the hour's are the last of them (ascending by instant),
    -- counted by a ZCOUNT where a second read would answer them again (decision 0061).
    local ops, first = m.ops_24h, 1
    if ops then
      first = #ops + 1 - redis.call('ZCOUNT', m.parts[5], '(' .. string.format('%.0f', m.now - HOUR), '+inf')
    else
      ops = risk_since(m.parts[5], m.now - HOUR)
    end
    local s1 = 0
    for i = first, #ops do
      local key = ops[i]
      if string.sub(key, 1, 6) ~= 'login:' and string.sub(key, 1, 13) ~= 'change_phone:' then s1 = s1 + 1 end
    end
    s.sensitive_ops_1h = s1 + in_flight_within(m, nil, HOUR)
  end,
  amounts = function(s, m)
    if not m.transfer then return end
    local x, amount = m.x, s.amount
    local past, all = {}, risk_amounts(m.parts[6])
    for _, raw in ipairs(all) do
      local currency, minor = string.match(raw, '^(.-):(%-?%d+)$')
      if currency == x.currency then past[#past + 1] = tonumber(minor) / x.unit end
    end
    s.amounts_known = #past
    -- A first transfer is not news; a first one in this currency after others is (only when some are known).
    if #all > 0 then s.new_currency = #past == 0 end
    m.past = past
    if #past >= 3 then
      local largest = past[1]
      for _, v in ipairs(past) do if v > largest then largest = v end end
      s.amount_vs_largest = amount / largest
    end
  end,
  -- The median and its spread (two sorts), only when a rule reads them: a rule on the amounts most often
  -- stops at the count or the largest (decision 0061). From the amounts the group above read.
  spread = function(s, m)
    if not m.transfer then return end
    local _ = s.amounts_known  -- the amounts, read once
    local past, amount = m.past, s.amount
    if #past >= 3 then
      local sorted = {}
      for i, v in ipairs(past) do sorted[i] = v end
      table.sort(sorted)
      local med = median(sorted)
      local dev = {}
      for i, v in ipairs(sorted) do dev[i] = math.abs(v - med) end
      table.sort(dev)
      local mad = median(dev)
      local spread = math.max(1.4826 * mad, 0.1 * med, 100 / m.x.unit)  -- 100 minor units, as risk_signals
      s.usual_amount = med
      if med > 0 then s.amount_vs_usual = amount / med
      else s.amount_vs_usual = (amount > 0 and 1 or 0) * 1e9 end
      s.amount_robust_z = (amount - med) / spread
    end
  end,
  device = function(s, m) new_of(s, 'new_device', m.parts[4], m.x.device) end,
  ip = function(s, m) new_of(s, 'new_ip', m.parts[3], m.x.ip) end,
}

-- Which group gives each signal the memory gives (the others are the question's: operation, amount, currency,
-- given).
local GIVES = {
  wrong_codes_in_a_row = 'user', blocks_in_a_row = 'user', phone_changed_hours = 'user',
  payees_added_24h = 'added', payee_burst = 'added', payee_paid_before = 'paid', payee_added_hours = 'payee_added',
  transfers_24h = 'transfers', sensitive_ops_1h = 'sensitive', amounts_known = 'amounts', usual_amount = 'spread',
  amount_vs_usual = 'spread', amount_robust_z = 'spread', amount_vs_largest = 'amounts', new_device = 'device',
  new_ip = 'ip', new_currency = 'amounts',
}

-- user: the user hash; parts: the memory's six keys (_risk_memory.lua's order); x (the question,
-- risk_program.question): {op, now (unix ms), payee, amount_minor, currency, unit (the currency's minor units in
-- one major unit: amounts are read in major units), ip, device (fingerprints, '' for none), given (signals
-- computed by the caller)}; open: {pending (the user's pending index), prefix (of a challenge hash's name),
-- digest (the operation's, hex)}, the user's open challenges (in_flight). Returns the signals by name, each
-- group computed from the memory when one of its signals is first read; its metatable's `added_at` tells the
-- transfer's payee's instant in the added set (read once, nil: none).
local function risk_signals(user, parts, x, open)
  local m = {user = user, parts = parts, x = x, open = open, now = tonumber(x.now),
    transfer = x.op == 'credit_transfer'}
  local added_read, added
  m.added_at = function()
    if not added_read then
      added_read = true
      if m.transfer then added = risk_seen_at(parts[2], x.payee) end
    end
    return added
  end
  local s, loaded = {}, {}
  for k, v in pairs(x.given) do s[k] = v end
  s.operation = x.op
  if m.transfer then s.amount, s.currency = tonumber(x.amount_minor) / x.unit, x.currency end
  return setmetatable(s, {added_at = m.added_at, __index = function(_, name)
    local group = GIVES[name]
    if group == nil or loaded[group] then return nil end
    loaded[group] = true
    LOADERS[group](s, m)
    return rawget(s, name)
  end})
end

local ORDERED = {
  ['<'] = function(a, b) return a < b end, ['<='] = function(a, b) return a <= b end,
  ['>'] = function(a, b) return a > b end, ['>='] = function(a, b) return a >= b end,
}

local function holds(s, clause)
  local value = s[clause[1]]
  if value == nil then return false end
  local op, bound = clause[2], clause[3]
  if ORDERED[op] then
    return type(value) == 'number' and type(bound) == 'number' and ORDERED[op](value, bound)
  elseif op == '==' then return value == bound
  elseif op == '!=' then return value ~= bound
  end
  for _, option in ipairs(bound) do if value == option then return true end end  -- 'in'
  return false
end

local RISK_DECISIONS = {'allow', 'warn', 'hold', 'deny'}

-- The program's section for the operation `op`: only the rules that may match it, their clauses on the
-- operation left out (decision 0051), built by its function in RISK_PROGRAM.
local function risk_program_for(op)
  return RISK_PROGRAM[op]()
end

-- program (risk_program_for): {version, rules = {{id, decision (1 ALLOW .. 4 DENY), reason, when = {{signal,
-- op, value}, ...}}, ...}}: a clause over a signal that is absent never holds; ordering holds for numbers only.
-- The assessment as RuleSet.assess makes it, and as the step keeps it: the decision (1 .. 4), the reason codes
-- (each once, in rule order), the matched rule ids, and, for a WARN or HOLD transfer to a payee added in the
-- last 72 hours, when it was added (unix ms; its SMS names the payee as new: risk_flow._new_payee), else nil.
local function risk_assess(program, s, x)
  local decision, matched, codes, told = 1, {}, {}, {}
  for _, rule in ipairs(program.rules) do
    local all = true
    for _, clause in ipairs(rule.when) do
      if not holds(s, clause) then all = false; break end
    end
    if all then
      matched[#matched + 1] = rule.id
      if not told[rule.reason] then codes[#codes + 1] = rule.reason; told[rule.reason] = true end
      if rule.decision > decision then decision = rule.decision end
    end
  end
  local added
  if (decision == 2 or decision == 3) and x.op == 'credit_transfer' then
    local at = getmetatable(s).added_at()
    if at and tonumber(x.now) - at < 72 * HOUR then added = at end
  end
  return decision, codes, matched, added
end

-- The challenge hash's `risk` field, as redis_records.risk_hash_fields writes it:
-- '<decision>|<rules version>|<codes>|<rule ids>|<payee added, unix ms>', empty parts cut from the end.
local function risk_kept(program, decision, codes, matched, added)
  local parts = {RISK_DECISIONS[decision], program.version, table.concat(codes, ','), table.concat(matched, ','),
    added and string.format('%.0f', added) or ''}
  while parts[#parts] == '' do parts[#parts] = nil end
  return table.concat(parts, '|')
end

-- The signals as a reply: numbers as text with 17 significant digits (cjson and Redis's reply conversion
-- would round them or cut them to integers), flags as '1'/'0' with a 'f:' tag, names with 'n:'.
local function risk_signals_reply(s)
  for name in pairs(GIVES) do local _ = s[name] end  -- every signal, computed
  local out = {}
  for k, v in pairs(s) do
    if type(v) == 'number' then out[#out + 1] = k; out[#out + 1] = string.format('%.17g', v)
    elseif type(v) == 'boolean' then out[#out + 1] = k; out[#out + 1] = v and 'f:1' or 'f:0'
    else out[#out + 1] = k; out[#out + 1] = 'n:' .. v end
  end
  return out
end
