-- Settle one outbox entry that held a notice (no code; docs/decisions/0033): journal it as a user notice,
-- sent or failed, with the number masked, and acknowledge and delete the entry, in one step: a notice the
-- gateway took and that was journaled is never sent again; one whose dispatcher died before this step is
-- claimed by another and sent again (at least once, as a code SMS: docs/decisions/0025).
-- KEYS[1] the user's journal stream, KEYS[2] the outbox stream of the user's shard, KEYS[3] (an override's
-- notice only) its addressee hash, deleted: the old number goes with it; all in the user's {s:<n>} slot
-- (decision 0044).
-- ARGV[1] the consumer group, ARGV[2] the entry id, ARGV[3 ..] journal field/value pairs.
-- Returns 1.
local entry = {}
for i = 3, #ARGV do entry[#entry + 1] = ARGV[i] end
journal_append(KEYS[1], entry)
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if KEYS[3] then
  redis.call('DEL', KEYS[3])
end
return 1
