-- The risk signals and rules, in a script's step (docs/risk.md): the same signals as risk_signals.signals and the
-- same decision as RuleSet.assess, from the user's memory as risk_fetch reads it (_risk_memory.lua) and the
-- rules compiled at boot to a JSON program (sesame.clients.risk_program). A piece, not a script.
-- The two evaluators are held equal by tests/contracts/test_risk_rules_lua.py (random memories, operations
-- and rule sets, through a real Redis): instants are unix ms on both sides. What only the caller knows (the
-- operator's SIM-swap answer, the bank's forwarded summary) comes computed, in the question's `given`.
local HOUR = 3600000

local function hours(since, now)
  local h = (now - since) / HOUR
  if h < 0 then return 0.0 end
  return h
end

local function pairs_of(flat)  -- ZRANGE WITHSCORES -> {member = ms}
  local out, n = {}, 0
  for i = 1, #flat, 2 do out[flat[i]] = tonumber(flat[i + 1]); n = n + 1 end
  return out, n
end

local function median(sorted)
  local n = #sorted
  if n % 2 == 1 then return sorted[(n + 1) / 2] end
  return (sorted[n / 2] + sorted[n / 2 + 1]) / 2
end

-- read: risk_fetch's reply {user hash pairs, payees, added, ips, devices, ops, amounts}
-- x (the question, risk_program.question): {op, now (unix ms), payee, amount_minor, currency, ip, device
-- (fingerprints, '' for none), given (signals computed by the caller)}. Returns the signals by name.
local function risk_signals(read, x)
  local now, op = tonumber(x.now), x.op
  local user = {}
  for i = 1, #read[1], 2 do user[read[1][i]] = read[1][i + 1] end
  local s = {}
  for k, v in pairs(x.given) do s[k] = v end
  s.operation = op
  s.wrong_codes_in_a_row = tonumber(user.failures or '0')
  s.blocks_in_a_row = tonumber(user.blocks or '0')
  local changed = tonumber(user.phone_changed_at or '0')
  if changed ~= 0 then s.phone_changed_hours = hours(changed, now) end
  local paid = pairs_of(read[2])
  local added = pairs_of(read[3])
  local ips, n_ips = pairs_of(read[4])
  local devices, n_devices = pairs_of(read[5])
  local ops = pairs_of(read[6])
  -- payees added
  local recent = {}
  for _, at in pairs(added) do if now - at < 72 * HOUR then recent[#recent + 1] = at end end
  if op == 'add_beneficiary' then recent[#recent + 1] = now end
  local day, burst = 0, 0
  for _, a in ipairs(recent) do
    if now - a < 24 * HOUR then day = day + 1 end
    local c = 0
    for _, b in ipairs(recent) do if a <= b and b < a + HOUR then c = c + 1 end end
    if c > burst then burst = c end
  end
  s.payees_added_24h, s.payee_burst = day, burst
  local transfer = op == 'credit_transfer'
  if transfer then
    s.payee_paid_before = paid[x.payee] ~= nil
    if added[x.payee] then s.payee_added_hours = hours(added[x.payee], now) end
  end
  -- usage
  local t24, s1 = 0, 0
  for key, at in pairs(ops) do
    if string.sub(key, 1, 16) == 'credit_transfer:' and now - at < 24 * HOUR then t24 = t24 + 1 end
    if string.sub(key, 1, 6) ~= 'login:' and string.sub(key, 1, 13) ~= 'change_phone:' and now - at < HOUR then
      s1 = s1 + 1
    end
  end
  s.transfers_24h = t24 + (transfer and 1 or 0)
  s.sensitive_ops_1h = s1
  if transfer then
    local amount = tonumber(x.amount_minor) / 100
    s.amount = amount
    local past = {}
    for _, raw in ipairs(read[7]) do
      local currency, minor = string.match(raw, '^(.-):(%-?%d+)$')
      if currency == x.currency then past[#past + 1] = tonumber(minor) / 100 end
    end
    s.amounts_known = #past
    if #past >= 3 then
      local sorted = {}
      local largest = past[1]
      for i, v in ipairs(past) do sorted[i] = v; if v > largest then largest = v end end
      table.sort(sorted)
      local med = median(sorted)
      local dev = {}
      for i, v in ipairs(sorted) do dev[i] = math.abs(v - med) end
      table.sort(dev)
      local mad = median(dev)
      local spread = math.max(1.4826 * mad, 0.1 * med, 1.0)
      s.usual_amount = med
      if med > 0 then s.amount_vs_usual = amount / med
      else s.amount_vs_usual = (amount > 0 and 1 or 0) * 1e9 end
      s.amount_robust_z = (amount - med) / spread
      s.amount_vs_largest = amount / largest
    end
  end
  if x.device ~= '' and n_devices > 0 then s.new_device = devices[x.device] == nil end
  if x.ip ~= '' and n_ips > 0 then s.new_ip = ips[x.ip] == nil end
  return s
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

-- program (risk_program.program): {version, rules = {{id, decision (1 ALLOW .. 4 DENY), reason, when = {{signal,
-- op, value}, ...}}, ...}}: a clause over a signal that is absent never holds; ordering holds for numbers only.
-- The assessment as RuleSet.assess makes it, and as the step keeps it: the decision (1 .. 4), the reason codes
-- (each once, in rule order), the matched rule ids, and, for a WARN or HOLD transfer to a payee added in the
-- last 72 hours, when it was added (unix ms; its SMS names the payee as new: risk_flow._new_payee), else nil.
local function risk_assess(program, s, x, read)
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
    local at = pairs_of(read[3])[x.payee]
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
  local out = {}
  for k, v in pairs(s) do
    if type(v) == 'number' then out[#out + 1] = k; out[#out + 1] = string.format('%.17g', v)
    elseif type(v) == 'boolean' then out[#out + 1] = k; out[#out + 1] = v and 'f:1' or 'f:0'
    else out[#out + 1] = k; out[#out + 1] = 'n:' .. v end
  end
  return out
end
