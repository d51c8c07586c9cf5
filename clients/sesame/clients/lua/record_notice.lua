#!lua flags=allow-oom
-- Runs out of memory (decision 0111): the notices queued before Redis filled up are sent, and what became of
-- each is recorded; bounded by the outbox.
-- Settle one outbox entry that held a notice (no code; docs/decisions/0033): journal it as a user notice,
-- sent or failed, with the number masked, and acknowledge and delete the entry, in one step: a notice the
-- gateway took and that was journaled is never sent again; one whose dispatcher died before this step is
-- claimed by another and sent again (at least once, as a code SMS: docs/decisions/0025).
-- KEYS[1] the user's journal stream, KEYS[2] the outbox stream of the user's shard, KEYS[3] the entry's
-- recorded attempt, KEYS[4] (an override's notice only) its addressee hash, deleted: the old number goes with
-- it; all in the user's {s:<n>} slot (decision 0044).
-- ARGV[1] the consumer group, ARGV[2] the entry id, ARGV[3] the attempt (the take or claim that gave the entry
-- to this dispatcher, '' none), ARGV[4] how long the attempt is remembered (ms), ARGV[5 ..] journal pairs.
-- Returns 1, or 2 when this attempt's notice was journaled already: the step ran, its answer was lost, and
-- the dispatcher asked again (decision 0055); nothing is written then: one `user.notice` per send (decision
-- 0056). Another attempt of the same entry (claimed from a dispatcher thought dead) is another send.
local attempt = ARGV[3]
if attempt ~= '' and redis.call('GET', KEYS[3]) == attempt then
  return 2
end
local entry = {}
for i = 5, #ARGV do entry[#entry + 1] = ARGV[i] end
journal_append(KEYS[1], entry)
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
if KEYS[4] then
  redis.call('DEL', KEYS[4])
end
if attempt ~= '' then
  redis.call('SET', KEYS[3], attempt, 'PX', ARGV[4])
end
return 1
