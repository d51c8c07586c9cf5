-- Count one attempt and decide it: the whole decision runs inside Redis, so exactly one
-- concurrent caller can see OPEN and turn it VERIFIED.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (same {ch:<id>} slot)
-- ARGV[1] attempt time (unix ms), ARGV[2] submitted op_digest (hex), ARGV[3] '1' if the code matched,
-- ARGV[4 ..] journal field/value pairs (event, time, ids, request context)
-- Returns {result, hgetall} or {'not_found'}.
local challenge, journal = KEYS[1], KEYS[2]
local h = redis.call('HMGET', challenge, 'status', 'expires_at', 'op_digest', 'max_attempts', 'user_id', 'client_id')
local status = h[1]
if not status then
  return {'not_found'}
end
local result
-- Terminal states answer first and do not count: a closed challenge never reopens.
if status == 'verified' then
  result = 'already_used'
elseif status == 'voided' or status == 'cancelled' then
  result = 'voided'
elseif status == 'locked' then
  result = 'locked'
elseif tonumber(ARGV[1]) >= tonumber(h[2]) then
  result = 'expired'
else
  -- Counted before the outcome is known: a wrong code, a foreign operation and a success all spend one.
  local attempts = redis.call('HINCRBY', challenge, 'attempts', 1)
  if ARGV[2] ~= h[3] then
    status, result = 'voided', 'operation_mismatch'  -- RTS Art. 5(1)(d): the code is void from now on
  elseif ARGV[3] ~= '1' then
    result = 'wrong_code'
    if attempts >= tonumber(h[4]) then status = 'locked' end
  else
    status, result = 'verified', 'verified'
  end
  redis.call('HSET', challenge, 'status', status)
end
local entry = {}
for i = 4, #ARGV do entry[#entry + 1] = ARGV[i] end
local attempts = redis.call('HGET', challenge, 'attempts')
for _, v in ipairs({'user_id', h[5], 'client_id', h[6], 'outcome', result, 'attempts', attempts, 'status', status}) do
  entry[#entry + 1] = v
end
redis.call('XADD', journal, '*', unpack(entry))
return {result, redis.call('HGETALL', challenge)}
