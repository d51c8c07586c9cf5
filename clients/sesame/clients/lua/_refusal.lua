-- Count one refusal of a challenge in its bounded `<challenge>:refusals` hash (the time of the last one
-- too) and return how many there were: the first is journaled, the others only counted, so that the
-- journal cannot be grown from outside. The hash lives as long as the challenge hash it counts for: a
-- refusal repeated on many challenges leaves nothing once they are purged.
local function count_refusal(refusals, challenge, kind, at)
  redis.call('HSET', refusals, kind .. ':last_at', at)
  local count = redis.call('HINCRBY', refusals, kind, 1)
  local ttl = redis.call('PTTL', challenge)
  if ttl > 0 then
    redis.call('PEXPIRE', refusals, ttl)
  end
  return count
end
