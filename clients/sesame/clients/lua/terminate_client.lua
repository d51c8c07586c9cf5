-- The client company ended the service (résiliation): no enrolment for it from now on. Journaled in the
-- client's journal; a second call changes nothing but is journaled too (docs/decisions/0010).
-- KEYS[1] client hash, KEYS[2] client journal stream (the same slot: the client id's shard)
-- ARGV[1] time (unix ms), ARGV[2 ..] journal field/value pairs
-- Returns 'terminated', 'unchanged' or 'not_found'.
local client, journal = KEYS[1], KEYS[2]
local status = redis.call('HGET', client, 'status')
if not status then
  return 'not_found'
end
local outcome = 'unchanged'
if status ~= 'terminated' then
  outcome = 'terminated'
  redis.call('HSET', client, 'status', 'terminated', 'terminated_at', ARGV[1])
end
local entry = {}
for i = 2, #ARGV do entry[#entry + 1] = ARGV[i] end
entry[#entry + 1] = 'outcome'
entry[#entry + 1] = outcome
journal_append(journal, entry)
return outcome
