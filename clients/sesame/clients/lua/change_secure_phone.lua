-- Replace a user's secure number and start the cooling period: one atomic step with its journal entry
-- (RTS Art. 24; docs/decisions/0010). The conditions the flow checked are checked again here, where they
-- cannot change underneath: the status the authority allows, and for a challenge, that the code went to
-- the number being replaced and that the user's status and number did not change since it was opened.
-- A change authorised by a challenge queues the notice to the old number (the challenge's, whose code went
-- there) in the same step, so that no notice is lost when the process dies after the change
-- (docs/decisions/0033, 0041). An override has no challenge to name: its step keeps the old number in a
-- small hash beside the user (the notice's addressee, expiring after the longest notice age) and the entry
-- names that hash, so that no number goes into the outbox; the dispatcher's settling step deletes it.
-- KEYS[1] user hash, KEYS[2] user journal stream, KEYS[3] applied request ids, KEYS[4] the SMS outbox of the
-- user's shard, KEYS[5] the override notice's addressee hash (unused under a challenge), KEYS[6] the user's
-- index of pending challenges (decision 0093): all in the user's {s:<n>} slot (decision 0044)
-- ARGV[1] time (unix ms), ARGV[2] new phone, ARGV[3] cooling until (unix ms), ARGV[4] allowed statuses
-- (space separated), ARGV[5] expected phone ('' any), ARGV[6] no change since (unix ms, 0 none),
-- ARGV[7] request id, ARGV[8] its fingerprint, ARGV[9] the challenge whose number gets the notice ('' none),
-- ARGV[10] the override notice's id ('' none), ARGV[11] its addressee hash's lifetime (ms),
-- ARGV[12..14] the no-op limits (_noops.lua), ARGV[15] the user's change counts the challenge was opened
-- under ('<status>:<number>', '' none: then ARGV[6] is the rule), ARGV[16 ..] journal field/value pairs
-- Returns {'changed', previous phone, hgetall, counts, open}, {'replayed', hgetall, counts}, {'refused'},
-- {'mismatch'}, {'phone_unchanged'} (the new number is the stored one: nothing written; the one place it is
-- compared, where a concurrent change to the same number cannot land between a reading and the change),
-- {'not_found'} or {'request_conflict'}; counts are the user's changes counted right after the
-- change, '<status>:<number>', recorded with the request id for a retry's voiding ('' for a change recorded
-- before they were): what the user opens since on the new number is not the change's to void; open, how
-- many of the user's challenges were open at the change: their codes went to the old number, each void from
-- then on, whichever step marks it so first (decision 0102).
-- A refusal or a mismatch changed nothing: journaled as a no-op (_noops.lua: the first few of the
-- user's hour, then counted; decisions 0054, 0058).
--#include _notice.lua
--#include _journal_hourly.lua
--#include _noops.lua
--#include _user_changes.lua
--#include _mask.lua
local user, journal, changes = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', user) == 0 then
  return {'not_found'}
end
local seen, counts = applied(lookup_applied(changes, ARGV[7], tonumber(ARGV[1]), noop_limits(12)))
if seen == ARGV[8] then
  return {'replayed', redis.call('HGETALL', user), counts}
elseif seen then
  return {'request_conflict'}
end
local h = redis.call('HMGET', user, 'status', 'phone', 'client_id', 'status_changed_at', 'phone_changed_at',
                     'user_id', 'locale', 'status_changes', 'phone_changes')
local since = tonumber(ARGV[6])
-- "No change since the challenge opened" by the counts when it has them: the order of the steps, whatever
-- the hosts' clocks (decision 0056); a challenge opened before them keeps the time rule (ARGV[6]).
local status_moved, phone_moved = changes_since(ARGV[15], h[8], h[9])
local counted = status_moved or phone_moved or false
local outcome, cooling = 'changed', ARGV[3]
if not string.find(' ' .. ARGV[4] .. ' ', ' ' .. h[1] .. ' ', 1, true) then
  outcome = 'refused'
elseif (ARGV[5] ~= '' and h[2] ~= ARGV[5])
    or (since > 0 and (tonumber(h[4] or '0') > since or tonumber(h[5] or '0') > since)) or counted then
  outcome = 'mismatch'
end
if outcome ~= 'changed' then
  cooling = 0
elseif h[2] == ARGV[2] then
  -- Another change made this number the secure one since the flow read the user (two overrides to the
  -- same number at once): a change from the number to itself would notify the new number as if it were
  -- the old one, restart the cooling and void what was opened on it.
  return {'phone_unchanged'}
end
local entry = {}
for i = 16, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'client_id', h[3], 'outcome', outcome, 'status', h[1], 'old_phone', mask_phone(h[2]),
                    'phone', mask_phone(ARGV[2]), 'cooling_until', cooling}) do
  entry[#entry + 1] = v
end
if outcome ~= 'changed' then
  journal_noop(user, journal, entry, tonumber(ARGV[1]), noop_limits(12))
  return {outcome}
end
journal_append(journal, entry)
redis.call('HSET', user, 'phone', ARGV[2], 'phone_changed_at', ARGV[1], 'cooling_until', ARGV[3])
-- The order of the changes, for the outbox's take (0056) and the voiding of what was opened before this one.
counts = (h[8] or '0') .. ':' .. redis.call('HINCRBY', user, 'phone_changes', 1)
redis.call('HSET', changes, ARGV[7], ARGV[8] .. '@' .. counts)
if ARGV[9] ~= '' then
  queue_notice(KEYS[4], ARGV[9], 'phone_changed', ARGV[1], 0)
elseif ARGV[10] ~= '' then
  redis.call('HSET', KEYS[5], 'phone', h[2], 'new_phone', ARGV[2], 'locale', h[7] or '')
  redis.call('PEXPIRE', KEYS[5], ARGV[11])
  queue_override_notice(KEYS[4], h[6], ARGV[10], 'phone_changed', ARGV[1])
end
return {outcome, h[2], redis.call('HGETALL', user), counts, redis.call('ZCOUNT', KEYS[6], '(' .. ARGV[1], '+inf')}
