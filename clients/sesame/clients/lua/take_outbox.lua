#!lua flags=allow-oom
-- Runs out of memory (decision 0111): the SMS queued before Redis filled up are sent, and what became of each
-- is recorded; bounded by the outbox, which nothing grows out of memory but a Verify's notice.
-- Give outbox entries to one dispatcher with the challenge each carries the code of, in one step (decision
-- 0040): the entries no consumer was given yet (XREADGROUP '>'), or those pending with any consumer for
-- longer than a timeout (XAUTOCLAIM from the start: their dispatcher died), each with its challenge hash as
-- stored now, so that a dispatcher needs no read of its own before it sends. A script cannot block: the
-- dispatcher waits for new entries with a blocking XREADGROUP of its own when this finds none.
-- KEYS[1] the outbox stream of one shard (`<place>:outbox`); each entry's challenge is in the same place
-- (its user's shard queued it there), `<place>:ch:<id>`, so the script touches one slot (decision 0044).
-- A code's SMS is withheld here when its user changed since its challenge opened (decision 0054): no longer
-- active (suspended for a lost or stolen phone, revoked), another secure number, or a suspension or a number
-- change since the challenge opened (a reinstatement, a number changed and back: counted, decision 0056). The
-- user is in the same place (`<place>:user:<id>`, decision 0044), so the check is in this step, where neither
-- can change underneath. Such an entry is never given: its challenge, if still open, is voided (journaled
-- `challenge.void`, as the change's own voiding step would: that step may not have run yet, or never will
-- if its process died); the entry is dead-lettered with the reason (`user_suspended`, `user_revoked`,
-- `phone_changed`: the challenge's delivery FAILED, journaled `challenge.dead_letter`, a masked line in the
-- shard's dead letters), acknowledged and deleted; the user's send unit it paid for is given back when this
-- is its first hand-out (_user_unit.lua, decision 0101). Its reply carries the reason (`withheld`), for the
-- dispatcher to give back its held send units (decision 0046). Notices are never withheld: a number change's
-- notice goes to the old number on purpose (decision 0041).
-- ARGV[1] the consumer group, ARGV[2] the consumer, ARGV[3] how many at most, ARGV[4] '' for new entries,
-- else the idle time (ms) past which pending entries are claimed, ARGV[5] now (unix ms), ARGV[6] now (ISO, the
-- journal's `at`), ARGV[7] dead letters kept at most, ARGV[8] their lifetime (ms).
-- Returns {'nogroup'} when the stream lost its group; else {'taken', then for each entry its id, its fields
-- (with `withheld` and the reason when withheld here) and its challenge's fields (empty once the challenge
-- was purged)}: none before the shard's first SMS (no stream yet). An entry deleted while pending is left
-- out (nothing to send).
--#include _delivery.lua
--#include _tries.lua
--#include _mask.lua
--#include _user_changes.lua
--#include _user_unit.lua
local outbox, group, consumer, count, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, now_iso, dead_kept, dead_lifetime = tonumber(ARGV[5] or ''), ARGV[6], ARGV[7], ARGV[8]
local place = string.sub(outbox, 1, #outbox - #':outbox')

-- Why a code's SMS must not go to its challenge's number any more (nil: it may): the user as it is now
-- against the user its challenge was opened for (as record_verification.lua's `stale`, and the changes since).
-- "Since" is an order, not a time (_user_changes.lua, decision 0056); a challenge opened before the counts
-- existed keeps the rule it was opened under (decision 0054), the change's time against its creation.
local function withheld_for(c)
  local status, user_id, phone = c.status, c.user_id, c.phone
  if not status or not user_id or not phone then
    return nil
  end
  local u = redis.call('HMGET', place .. ':user:' .. user_id, 'status', 'phone', 'status_changes',
                       'phone_changes', 'status_changed_at', 'phone_changed_at')
  local status_moved, phone_moved = moved_since(c.user_changes, c.created_at, u[3], u[4], u[5], u[6])
  if not u[1] then
    return nil  -- no such user any more: nothing to compare with (Verify's rule)
  elseif u[1] == 'revoked' then
    return 'user_revoked'
  elseif u[1] ~= 'active' or status_moved then
    return 'user_suspended'
  elseif u[2] ~= phone or phone_moved then
    return 'phone_changed'
  end
  return nil
end

-- Void (if open) and dead-letter the challenge `c` of the entry `entry_id`, for `reason`: nothing handed out.
local function withhold(entry_id, c, queued_at, reason)
  local key = place .. ':ch:' .. c.challenge_id
  local journal = key .. ':journal'
  local tries = tries_of(outbox, group, entry_id)
  local status = c.status
  if status == 'open' then
    status = 'voided'
    redis.call('HSET', key, 'status', status)
    redis.call('ZREM', place .. ':pending:' .. c.user_id, c.challenge_id)  -- closed: not open any more (0093)
    journal_append(journal, {'event', 'challenge.void', 'at', now_iso, 'challenge_id', c.challenge_id,
      'void_reason', reason, 'actor', 'dispatcher', 'user_id', c.user_id, 'client_id', c.client_id or '',
      'op_digest', c.op_digest or '', 'outcome', 'voided', 'attempts', c.attempts or '0', 'status', status})
  end
  unit_back(outbox, group, entry_id, c.user_id)  -- nothing handed out: the user's unit back (decision 0101)
  redis.call('XACK', outbox, group, entry_id)
  redis.call('XDEL', outbox, entry_id)
  local dead = place .. ':dead'
  redis.call('XADD', dead, 'MAXLEN', '~', dead_kept, '*',
             'challenge_id', c.challenge_id, 'user_id', c.user_id, 'phone', mask_phone(c.phone), 'state', 'failed',
             'reason', reason, 'failure', reason, 'tries', tostring(tries), 'queued_at', queued_at,
             'at', tostring(now))
  local t = redis.call('TIME')  -- the stream's ids are Redis's clock: trim by it, not by the caller's
  local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(dead_lifetime)
  redis.call('XTRIM', dead, 'MINID', '~', tostring(math.max(oldest, 0)))
  redis.call('PEXPIRE', dead, dead_lifetime)
  local messages = c.messages and cjson.decode(c.messages) or {}
  note_message(messages, 'failed:' .. entry_id, 'failed')
  local delivery = best_delivery(messages, 'queued')
  redis.call('HSET', key, 'delivery', delivery, 'messages', cjson.encode(messages))
  if delivery == 'failed' then
    redis.call('HSET', key, 'delivery_reason', reason)
  end
  journal_append(journal, {'event', 'challenge.dead_letter', 'at', now_iso, 'challenge_id', c.challenge_id,
    'user_id', c.user_id, 'client_id', c.client_id or '', 'op_digest', c.op_digest or '', 'failure', reason,
    'tries', tostring(tries), 'attempts', c.attempts or '0', 'status', status, 'outcome', 'failed',
    'reason', reason, 'delivery', delivery})
end
if redis.call('EXISTS', outbox) == 0 then
  return {'taken'}  -- no SMS was ever queued in this shard (the first one makes the stream and the group)
end
local entries
if idle == '' then
  local read = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', outbox, '>')
  if type(read) == 'table' and read.err then
    if string.find(read.err, 'NOGROUP', 1, true) then
      return {'nogroup'}
    end
    return redis.error_reply(read.err)
  end
  entries = read and read[1][2] or {}
else
  local claimed = redis.pcall('XAUTOCLAIM', outbox, group, consumer, idle, '0-0', 'COUNT', count)
  if type(claimed) == 'table' and claimed.err then
    if string.find(claimed.err, 'NOGROUP', 1, true) then
      return {'nogroup'}
    end
    return redis.error_reply(claimed.err)
  end
  entries = claimed[2]
end
local reply = {'taken'}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if fields and #fields > 0 then
    local challenge_id, notice, queued_at = '', '', '0'
    for i = 1, #fields, 2 do
      if fields[i] == 'challenge_id' then challenge_id = fields[i + 1] end
      if fields[i] == 'notice' then notice = fields[i + 1] end
      if fields[i] == 'queued_at' then queued_at = fields[i + 1] end
    end
    -- As Keyspace.challenge: the challenge is in its user's place, this outbox's; an override's notice
    -- names none (decision 0041).
    local challenge = challenge_id == '' and {} or redis.call('HGETALL', place .. ':ch:' .. challenge_id)
    if notice == '' and #challenge > 0 then
      local c = {}
      for i = 1, #challenge, 2 do c[challenge[i]] = challenge[i + 1] end
      local reason = withheld_for(c)
      if reason then
        withhold(entry[1], c, queued_at, reason)
        fields[#fields + 1] = 'withheld'
        fields[#fields + 1] = reason
        challenge = redis.call('HGETALL', place .. ':ch:' .. challenge_id)
      end
    end
    reply[#reply + 1] = entry[1]
    reply[#reply + 1] = fields
    reply[#reply + 1] = challenge
  end
end
return reply
