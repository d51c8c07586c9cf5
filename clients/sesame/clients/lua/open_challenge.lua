-- Store a new OPEN challenge until expiry + retention; never overwrite, never reuse an id.
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream (same {ch:<id>} slot)
-- ARGV[1] absolute purge time (unix ms, from the challenge's own expiry, not Redis time),
-- ARGV[2] n = count of hash field/value elements, ARGV[3 .. 2+n] hash pairs, ARGV[3+n ..] journal pairs
-- Returns 1 when stored, 0 when the id was already used (the journal outlives the hash).
local challenge, journal = KEYS[1], KEYS[2]
if redis.call('EXISTS', challenge, journal) > 0 then
  return 0
end
local n = tonumber(ARGV[2])
local fields, entry = {}, {}
for i = 3, 2 + n do fields[#fields + 1] = ARGV[i] end
for i = 3 + n, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call('HSET', challenge, unpack(fields))
redis.call('PEXPIREAT', challenge, ARGV[1])
redis.call('XADD', journal, '*', unpack(entry))
return 1
