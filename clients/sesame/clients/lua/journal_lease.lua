#!lua flags=allow-oom
-- Runs out of memory (decision 0132): a sealer takes the lease while Redis is full, so that one seals and
-- lets go what is archived; one key, its holder's name.
-- Take or renew the sealer's lease (docs/decisions/0027): exactly one sealer at a time.
-- KEYS[1] the lease ({journal} slot). ARGV[1] the holder's name, ARGV[2] the lease's length (ms).
-- Returns 0 when another holds it; else the holder has the lease until now + length: 2 when it held it
-- already (renewed), 1 when it took it (free, or lapsed: another sealer may have archived blocks since, so
-- the holder reads the archive afresh, decision 0071).
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 2
end
if holder then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
