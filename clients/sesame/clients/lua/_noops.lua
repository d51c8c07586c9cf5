-- Back-office calls that changed nothing (decision 0054): a suspension of a suspended user, a revocation of a
-- revoked one, a reinstatement or an unblock with nothing to lift, and the refusals of a change (a revoked
-- user's, a number change's mismatch). Anyone allowed may repeat them with new request ids: neither their
-- journal entries nor their request ids may grow Redis without bound.

local NOOPS_JOURNALED_PER_HOUR = 20  -- a user's first no-ops of its hour are journaled (decision 0050's cap)
local NOOP_IDS_KEPT = 64  -- request ids of no-ops remembered per user, at most ...
local NOOP_IDS_FOR_MS = 86400000  -- ... and for at most 24 hours (docs/api.md)

-- Journal `entry` in `journal` unless the user's hour already journaled NOOPS_JOURNALED_PER_HOUR no-ops
-- (_journal_hourly.lua, as decision 0050 does for denials). `now` unix ms. True when journaled.
local function journal_noop(user, journal, entry, now)
  return journal_hourly(user, 'noops', NOOPS_JOURNALED_PER_HOUR, journal, entry, now)
end

-- Remember the request id of a no-op in the user's applied request ids `changes` (a retry is answered as
-- before, another call under it refused), and forget the no-ops' ids older than NOOP_IDS_FOR_MS or beyond
-- the NOOP_IDS_KEPT latest: their times are in `<changes>:noops` (same slot). Ids of real changes are not
-- in it: each is a change of the user, journaled, kept as long as the user.
local function remember_noop(changes, request_id, fingerprint, now)
  local noops = changes .. ':noops'
  redis.call('HSET', changes, request_id, fingerprint)
  redis.call('ZADD', noops, now, request_id)
  local old = redis.call('ZRANGEBYSCORE', noops, '-inf', now - NOOP_IDS_FOR_MS)
  local over = redis.call('ZCARD', noops) - #old - NOOP_IDS_KEPT
  if over > 0 then
    old = redis.call('ZRANGE', noops, 0, #old + over - 1)
  end
  if #old > 0 then
    redis.call('HDEL', changes, unpack(old))
    redis.call('ZREM', noops, unpack(old))
  end
end
