-- A change of a user's status, one atomic step with its journal entry (docs/decisions/0010): the body of the
-- two scripts that make one, change_user_status.lua (reinstate) and restrict_user.lua (suspend, revoke). Out
-- of memory the first is refused whole and the second runs (decision 0111): Redis flags a script, not a path
-- through it, so the two directions are two scripts, one body. Included after _journal_hourly.lua, _noops.lua
-- and _user_changes.lua (pieces do not include pieces).
-- suspend: active -> suspended. reinstate: suspended -> active, and wrong codes and blocks in a row start
-- again. revoke: -> revoked, final. Asking for the current state changes nothing; from revoked, only
-- revoke is accepted. A request id applied before answers the user as it is now, without a new entry, and
-- the counts its change left (recorded with its fingerprint: its retry's voiding reaches nothing opened
-- since).
-- KEYS[1] user hash, KEYS[2] user journal stream, KEYS[3] applied request ids, KEYS[4] the user's index of
-- pending challenges (decision 0093; all in the user's {s:<n>} slot)
-- ARGV[1] action, ARGV[2] time (unix ms), ARGV[3] request id to record ('' none), ARGV[4] its fingerprint,
-- ARGV[5] the client on whose behalf ('' none: a missing user is not found; else a missing id is
-- spent and another client's user left alone), ARGV[6..8] the no-op limits (_noops.lua),
-- ARGV[9 ..] journal field/value pairs
-- Returns {'suspended'|'reinstated'|'unblocked'|'revoked'|'unchanged'|'replayed', hgetall, counts, open},
-- {'refused'}, {'not_found'}, {'foreclosed'}, {'foreign'}, {'request_conflict'} or {'noops_full', ms}
-- (a reinstatement that would change nothing, the user's no-op ids full until ms); counts are the user's
-- changes counted right after the step, '<status>:<number>' ('' for a request recorded before they were);
-- open, for a suspension or a revocation made here, how many of the user's challenges were open at that
-- instant: every one is void from it, whichever step marks it so first (the change's voiding, a Verify, the
-- outbox's take: decision 0102); 0 otherwise.
-- An outcome that changed nothing ('unchanged', 'refused') is journaled as a no-op (_noops.lua: the first few
-- of the user's hour, then counted), and its request id remembered for a bounded time (decision 0054), or
-- a reinstatement refused when no room is left (decision 0150).

-- Make the change ARGV[1] names when `allowed` (action -> true) holds it; another action is an error, never a
-- change made by the script that must not make it.
local function change_status(allowed)
  local user, journal, changes = KEYS[1], KEYS[2], KEYS[3]
  local action, now, request_id, fingerprint, for_client = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
  if not allowed[action] then
    return redis.error_reply('ERR not this script\'s action: ' .. action)
  end
  local limits = noop_limits(6)
  local function append(fields, noop)
    local entry = {}
    for i = 9, #ARGV do entry[#entry + 1] = ARGV[i] end
    for _, v in ipairs(fields) do entry[#entry + 1] = v end
    if noop then
      journal_noop(user, journal, entry, tonumber(now), limits)
    else
      journal_append(journal, entry)
    end
  end
  if redis.call('EXISTS', user) == 0 then
    if for_client == '' then
      return {'not_found'}
    end
    -- Listed for a terminated client, never enrolled (cut short, or on its way): the journal spends the id.
    if redis.call('EXISTS', journal) == 0 then
      append({'client_id', for_client, 'outcome', 'foreclosed', 'status', 'revoked'})
    end
    return {'foreclosed'}
  end
  if request_id ~= '' then
    local seen, counts = applied(lookup_applied(changes, request_id, tonumber(now), limits))
    if seen == fingerprint then
      return {'replayed', redis.call('HGETALL', user), counts}
    elseif seen then
      return {'request_conflict'}
    end
  end
  local h = redis.call('HMGET', user, 'status', 'client_id', 'failures', 'blocks', 'blocked_until',
                       'status_changes', 'phone_changes')
  if for_client ~= '' and h[2] ~= for_client then
    return {'foreign'}
  end
  local status, outcome, status_changes = h[1], 'unchanged', h[6] or '0'
  local blocked = (tonumber(h[3] or '0') or 0) + (tonumber(h[4] or '0') or 0)
                  + (tonumber(h[5] or '0') or 0) > 0
  if status == 'revoked' then
    if action ~= 'revoke' then outcome = 'refused' end
  elseif action == 'suspend' then
    if status ~= 'suspended' then status, outcome = 'suspended', 'suspended' end
  elseif action == 'revoke' then
    status, outcome = 'revoked', 'revoked'
  elseif status == 'suspended' then
    status, outcome = 'active', 'reinstated'
  elseif blocked then
    outcome = 'unblocked'
  end
  if outcome == 'suspended' or outcome == 'reinstated' or outcome == 'revoked' then
    redis.call('HSET', user, 'status', status, 'status_changed_at', now)
    -- The order of the user's changes, without a clock: the outbox's take compares it with the count its
    -- challenge was opened at (decision 0056).
    status_changes = redis.call('HINCRBY', user, 'status_changes', 1)
  end
  local counts = status_changes .. ':' .. (h[7] or '0')
  -- A no-op's id is remembered when there is room; without room, a suspension or revocation that changed
  -- nothing is answered all the same (its retry can only restrict again), a reinstatement refused (its
  -- retry, taken as new, would lift a suspension made since: decision 0150).
  local room = outcome ~= 'unchanged' or request_id == '' or noop_room(changes, tonumber(now), limits)
  if room ~= true and action == 'reinstate' then
    return {'noops_full', room}
  end
  if outcome == 'reinstated' or outcome == 'unblocked' then
    redis.call('HSET', user, 'failures', 0, 'blocks', 0, 'blocked_until', 0)
  end
  local noop = outcome == 'unchanged' or outcome == 'refused'
  append({'client_id', h[2], 'outcome', outcome, 'status', status}, noop)
  if outcome == 'refused' then
    return {outcome}
  end
  if request_id ~= '' and noop then
    if room == true then remember_noop(changes, request_id, fingerprint .. '@' .. counts, tonumber(now)) end
  elseif request_id ~= '' then
    redis.call('HSET', changes, request_id, fingerprint .. '@' .. counts)
  end
  local open = 0
  if outcome == 'suspended' or outcome == 'revoked' then
    open = redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf')
  end
  return {outcome, redis.call('HGETALL', user), counts, open}
end
