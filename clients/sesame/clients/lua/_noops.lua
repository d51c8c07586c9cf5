-- Back-office calls that changed nothing (decision 0054): a suspension of a suspended user, a revocation of a
-- revoked one, a reinstatement or an unblock with nothing to lift, and the refusals of a change (a revoked
-- user's, a number change's mismatch). Anyone allowed may repeat them with new request ids: neither their
-- journal entries nor their request ids may grow Redis without bound.

-- The limits are settings (decision 0058), three arguments of the including script from ARGV[first]: the
-- no-ops journaled per user and hour (SESAME_NOOPS_JOURNALED_PER_HOUR), the request ids of no-ops remembered
-- per user (SESAME_NOOP_IDS_KEPT) and for how long in ms (SESAME_NOOP_IDS_KEPT_SECONDS).
local function noop_limits(first)
  return {per_hour = tonumber(ARGV[first]), ids_kept = tonumber(ARGV[first + 1]),
          ids_for_ms = tonumber(ARGV[first + 2])}
end

-- Journal `entry` in `journal` unless the user's hour already journaled `limits.per_hour` no-ops
-- (_journal_hourly.lua, as decision 0050 does for denials). `now` unix ms. True when journaled.
local function journal_noop(user, journal, entry, now, limits)
  return journal_hourly(user, 'noops', limits.per_hour, journal, entry, now)
end

-- The no-ops' ids older than `limits.ids_for_ms` forgotten (their times in `<changes>:noops`, same slot).
local function forget_old_noops(changes, now, limits)
  local noops = changes .. ':noops'
  local old = redis.call('ZRANGEBYSCORE', noops, '-inf', now - limits.ids_for_ms)
  if #old > 0 then
    redis.call('HDEL', changes, unpack(old))
    redis.call('ZREM', noops, unpack(old))
  end
end

-- The no-ops' ids older than `limits.ids_for_ms` forgotten before a request id is looked up: one was answered
-- as its no-op ten minutes past a 60 s setting, forgotten only at the user's next no-op (an outside audit).
local function lookup_applied(changes, request_id, now, limits)
  forget_old_noops(changes, now, limits)
  return redis.call('HGET', changes, request_id)
end

-- Room for one more no-op's request id in the user's applied ids `changes`: the no-ops' ids older than
-- `limits.ids_for_ms` are forgotten first (their times are in `<changes>:noops`, same slot); then true when
-- fewer than `limits.ids_kept` are left, else the time (ms) the oldest left is forgotten at. An id is never
-- forgotten for a newer one (decision 0150): a forgotten no-op's retry is a new call, and a reinstatement's
-- or an unblock's, after a suspension or a block made since, would lift it. Ids of real changes are not in
-- it: each is a change of the user, journaled, kept as long as the user.
local function noop_room(changes, now, limits)
  local noops = changes .. ':noops'
  forget_old_noops(changes, now, limits)
  if redis.call('ZCARD', noops) < limits.ids_kept then
    return true
  end
  return tonumber(redis.call('ZRANGE', noops, 0, 0, 'WITHSCORES')[2]) + limits.ids_for_ms
end

-- Remember the request id of a no-op, room made by `noop_room`, as `record` (its fingerprint, with the
-- counts for a status change: _user_changes.lua's `applied`), so that a retry is answered as before and
-- another call under it refused.
local function remember_noop(changes, request_id, record, now)
  redis.call('HSET', changes, request_id, record)
  redis.call('ZADD', changes .. ':noops', now, request_id)
end
