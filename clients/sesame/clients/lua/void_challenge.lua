-- Void one of a user's pending challenges after a suspension or revocation: an OPEN challenge is
-- cancelled (even its right code answers VOIDED from then on); an id not opened yet is spent, so that
-- its late opener fails. Idempotent: a closed challenge is left as it is.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (its user's {s:<n>} slot)
-- ARGV[1] the user whose index named it, ARGV[2 ..] journal field/value pairs (head, reason, provenance)
-- Returns 'voided', 'closed', 'gone' (purged after its retention) or 'foreclosed'.
local challenge, journal = KEYS[1], KEYS[2]
local function append(fields)
  local entry = {}
  for i = 2, #ARGV do entry[#entry + 1] = ARGV[i] end
  for _, v in ipairs(fields) do entry[#entry + 1] = v end
  journal_append(journal, entry)
end
local h = redis.call('HMGET', challenge, 'status', 'user_id', 'client_id', 'op_digest', 'attempts')
if not h[1] then
  if redis.call('EXISTS', journal) == 1 or redis.call('EXISTS', journal .. ':tail') == 1 then
    return 'gone'
  end
  append({'user_id', ARGV[1], 'outcome', 'foreclosed'})
  return 'foreclosed'
end
if h[1] ~= 'open' then
  return 'closed'
end
redis.call('HSET', challenge, 'status', 'cancelled')
append({'user_id', h[2], 'client_id', h[3], 'op_digest', h[4], 'outcome', 'voided', 'attempts', h[5],
        'status', 'cancelled'})
return 'voided'
