-- Remember the key versions this HSM holds and their fingerprints; refuse a label seen with another key.
-- Key versions are never reused (docs/decisions/0015): a boot that records a key under a label Redis saw
-- with another fingerprint is a replaced token, and nothing is written.
-- KEYS[1] the key ledger hash (shard 0's slot): `<kind>` -> highest version seen, `<label>` -> fingerprint
-- KEYS[2] the key ledger's journal stream (shard 0's slot)
-- ARGV[1] the instant (ISO 8601), ARGV[2 ..] triples: kind (otp|proof|journal), version, fingerprint (hex)
-- Returns {'recorded', n} (n labels or versions new to the ledger) or {'replaced', label}.
local ledger, journal = KEYS[1], KEYS[2]
for i = 2, #ARGV, 3 do
  local label = 'sesame-' .. ARGV[i] .. '-v' .. ARGV[i + 1]
  local known = redis.call('HGET', ledger, label)
  if known and known ~= ARGV[i + 2] then
    return {'replaced', label}
  end
end
-- Only what the ledger does not hold yet is written: every boot records the keys it holds, and a write of
-- what is there already would be refused out of memory, so that a worker restarted while Redis is full
-- could not boot (decision 0111).
local new = {}
for i = 2, #ARGV, 3 do
  local kind, version = ARGV[i], tonumber(ARGV[i + 1])
  local label = 'sesame-' .. kind .. '-v' .. ARGV[i + 1]
  if redis.call('HEXISTS', ledger, label) == 0 then
    redis.call('HSET', ledger, label, ARGV[i + 2])
    new[#new + 1] = label
  end
  if version > (tonumber(redis.call('HGET', ledger, kind)) or 0) then
    redis.call('HSET', ledger, kind, version)
  end
end
if #new > 0 then
  journal_append(journal, {'event', 'keys.recorded', 'at', ARGV[1], 'labels', table.concat(new, ',')})
end
return {'recorded', #new}
