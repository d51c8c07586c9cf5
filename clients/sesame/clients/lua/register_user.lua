-- Enrol a user, or find the same enrolment again; one atomic step with its journal entry.
-- KEYS[1] user hash, KEYS[2] user journal stream (same {s:<n>} slot)
-- ARGV[1] client_id, ARGV[2] phone, ARGV[3] locale, ARGV[4] n = count of hash field/value elements,
-- ARGV[5 .. 4+n] hash field/value pairs, ARGV[5+n ..] journal field/value pairs
-- Returns {'created'|'existing', hgetall}, {'conflict'} (enrolled with another client, number or locale: an
-- enrolment that would change the SMS's language is not silently ignored) or {'revoked'}.
local user, journal = KEYS[1], KEYS[2]
if redis.call('EXISTS', user) == 1 then
  local stored = redis.call('HMGET', user, 'client_id', 'phone', 'status', 'locale')
  if stored[3] == 'revoked' then
    return {'revoked'}  -- revocation is final: the id is never enrolled again (docs/decisions/0010)
  end
  if stored[1] == ARGV[1] and stored[2] == ARGV[2] and stored[4] == ARGV[3] then
    return {'existing', redis.call('HGETALL', user)}
  end
  return {'conflict'}
end
if redis.call('EXISTS', journal) == 1 then
  return {'revoked'}  -- a journal without a user: the id was spent when its client was terminated
end
local n = tonumber(ARGV[4])
local fields, entry = {}, {}
for i = 5, 4 + n do fields[#fields + 1] = ARGV[i] end
for i = 5 + n, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('HSET', user, unpack(fields))
journal_append(journal, entry)
return {'created', redis.call('HGETALL', user)}
