#!lua flags=allow-oom
-- Runs out of memory (decision 0111): the notices queued before Redis filled up are sent, and what became of
-- each is recorded; bounded by the outbox and each entry's tries.
-- A send of a notice (no code) that did not reach the phone (docs/decisions/0041): tried again later, or
-- dead-lettered, in one step, with the policy of a code's (record_failed_try.lua) but nothing written on
-- the challenge, whose own delivery the notice is not. Dead-lettered when the notice is older than its age
-- limit (reason `expired`: a notice told days late misleads more than it tells), when the caller allows no
-- more tries (every provider gave its final word: that word is the reason), or when the entry was given to
-- dispatchers `allowed` times (its XPENDING delivery count; reason max_tries). Whatever ended it, the reason
-- is `unconfirmed` when one of its tries may have reached the phone (decision 0096): its mark remembers such a
-- try across the tries (decision 0097), kept as long as a dead letter (longer than a notice's age limit). A
-- dead letter journals the user notice as failed with the reason, acknowledges and deletes the entry and its
-- mark and appends a masked line to the dead letters stream (bounded, expiring); otherwise the entry stays
-- pending, claimed again once idle, and the failed try is journaled (outcome try_failed).
-- KEYS[1] the user's journal stream, KEYS[2] the outbox stream of the user's shard, KEYS[3] the dead letters
-- stream beside it, KEYS[4] the entry's mark (a try may have reached the phone), KEYS[5] (an override's
-- notice only) its addressee hash, deleted with a dead letter: the old number goes with it; all in the
-- user's {s:<n>} slot (decision 0044).
-- ARGV[1] consumer group, ARGV[2] entry id, ARGV[3] the failure (a DeliveryFailure reason, or `expired`),
-- ARGV[4] tries allowed (0: none more), ARGV[5] now (unix ms), ARGV[6] the notice's age limit (unix ms: its
-- queued_at plus the limit), ARGV[7] dead letters kept at most, ARGV[8] dead letters' lifetime (ms),
-- ARGV[9] queued_at (unix ms), ARGV[10] challenge id, ARGV[11] user id, ARGV[12] the number masked,
-- ARGV[13] the notice's kind, ARGV[14 ..] the user.notice journal pairs (their outcome is set here).
-- Returns {0, tries} when the entry stays for another try, {1, tries, reason} when it was dead-lettered.
--#include _tries.lua
local outbox, dead = KEYS[2], KEYS[3]
local group, entry_id, failure = ARGV[1], ARGV[2], ARGV[3]
local allowed, now = tonumber(ARGV[4]), tonumber(ARGV[5])
local tries = tries_of(outbox, group, entry_id)
local reason = given_up(failure, now >= tonumber(ARGV[6]), allowed, tries,
                        redis.call('EXISTS', KEYS[4]) == 1)
local function journal(outcome, pairs)
  local entry = {}
  for i = 14, #ARGV, 2 do
    local value = ARGV[i + 1]
    if ARGV[i] == 'outcome' then value = outcome end
    entry[#entry + 1] = ARGV[i]
    entry[#entry + 1] = value
  end
  for _, v in ipairs({'challenge_id', ARGV[10], 'failure', failure, 'tries', tostring(tries)}) do
    entry[#entry + 1] = v
  end
  for _, v in ipairs(pairs) do entry[#entry + 1] = v end
  journal_append(KEYS[1], entry)
end
if not reason then
  if UNCONFIRMED[failure] then
    redis.call('SET', KEYS[4], '1', 'PX', ARGV[8])
  end
  journal('try_failed', {})
  return {0, tries}
end
redis.call('XACK', outbox, group, entry_id)
redis.call('XDEL', outbox, entry_id)
redis.call('DEL', KEYS[4])
if KEYS[5] then
  redis.call('DEL', KEYS[5])
end
redis.call('XADD', dead, 'MAXLEN', '~', ARGV[7], '*',
           'challenge_id', ARGV[10], 'user_id', ARGV[11], 'phone', ARGV[12], 'state', 'failed', 'reason', reason,
           'failure', failure, 'tries', tostring(tries), 'queued_at', ARGV[9], 'at', tostring(now),
           'notice', ARGV[13])
local t = redis.call('TIME')  -- the stream's ids are Redis's clock: trim by it, not by the caller's
local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[8])
redis.call('XTRIM', dead, 'MINID', '~', tostring(math.max(oldest, 0)))
redis.call('PEXPIRE', dead, ARGV[8])
journal('failed', {'reason', reason})
return {1, tries, reason}
