-- Journal a health note (docs/decisions/0036): the state of the dependencies as one worker saw it, sealed
-- with the rest of the journal, so that evidence can show the gateway and the HSM working at the time of an
-- operation (CMF L.133-23: no technical deficiency). Notes older than the evidence retention are trimmed
-- from Redis (the archive keeps them; XTRIM lowers no entry's number, so the stream's numbering holds).
-- KEYS[1] the health journal stream (shard 0's slot)
-- ARGV[1] the oldest id to keep (unix ms), ARGV[2 ..] journal field/value pairs
local journal = KEYS[1]
local entry = {}
for i = 2, #ARGV do entry[#entry + 1] = ARGV[i] end
local id = journal_append(journal, entry)
redis.call('XTRIM', journal, 'MINID', ARGV[1])
return id
