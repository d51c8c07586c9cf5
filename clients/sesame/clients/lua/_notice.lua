-- Queue an informational notice (no code) in the SMS outbox, in the step that makes the change it reports, so
-- that no notice is lost when the process dies after the change (docs/decisions/0033). The entry names the
-- challenge the dispatcher reads the destination, locale and operation from, the notice's kind, when it was
-- queued (the change's time) and, for a block, its end; never a number or a text.
local function queue_notice(outbox, challenge_id, kind, now, until_ms)
  if redis.call('EXISTS', outbox) == 0 then
    redis.call('XGROUP', 'CREATE', outbox, 'dispatchers', '0', 'MKSTREAM')  -- the first SMS ever queued
  end
  redis.call('XADD', outbox, '*', 'challenge_id', challenge_id, 'send', 'notice', 'notice', kind,
             'until', tostring(until_ms), 'queued_at', now)
end
-- An override's notice names no challenge: it names its user and the hash beside the user that holds its
-- addressee until it is settled (docs/decisions/0041); still never a number or a text in the entry.
local function queue_override_notice(outbox, user_id, notice_id, kind, now)
  if redis.call('EXISTS', outbox) == 0 then
    redis.call('XGROUP', 'CREATE', outbox, 'dispatchers', '0', 'MKSTREAM')  -- the first SMS ever queued
  end
  redis.call('XADD', outbox, '*', 'challenge_id', '', 'user_id', user_id, 'notice_id', notice_id,
             'send', 'notice', 'notice', kind, 'until', '0', 'queued_at', now)
end
