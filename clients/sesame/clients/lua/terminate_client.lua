#!lua flags=allow-oom
-- Runs out of memory (decision 0111): a termination revokes its client's users (restrict_user.lua, which runs
-- out of memory too), voiding their open codes while Redis is full. Bounded: a client is terminated once, for
-- good; a repeated termination is a no-op, journaled as below.
-- The client company ended the service (résiliation): no enrolment for it from now on. Journaled in the
-- client's journal. A second call changes nothing and is journaled as `unchanged`, the client's first
-- ARGV[2] of the hour, later ones only counted in the client hash and the count sealed with the next one
-- journaled (_journal_hourly.lua, as a user's no-ops: decisions 0010, 0054): a caller retrying at will
-- grows neither Redis nor the archive.
-- KEYS[1] client hash, KEYS[2] client journal stream (the same slot: the client id's shard)
-- ARGV[1] time (unix ms), ARGV[2] no-ops journaled per hour, ARGV[3 ..] journal field/value pairs
-- Returns 'terminated', 'unchanged' or 'not_found'.
--#include _journal_hourly.lua
local client, journal = KEYS[1], KEYS[2]
local status = redis.call('HGET', client, 'status')
if not status then
  return 'not_found'
end
local entry = {}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
entry[#entry + 1] = 'outcome'
if status == 'terminated' then
  entry[#entry + 1] = 'unchanged'
  journal_hourly(client, 'noops', tonumber(ARGV[2]), journal, entry, tonumber(ARGV[1]))
  return 'unchanged'
end
redis.call('HSET', client, 'status', 'terminated', 'terminated_at', ARGV[1])
entry[#entry + 1] = 'terminated'
journal_append(journal, entry)
return 'terminated'
