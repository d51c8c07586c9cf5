-- Whether a user's status and its number changed since a challenge opened, by the order of the steps, not
-- the hosts' clocks (decision 0056): the user counts its changes of status and of number (`status_changes`,
-- `phone_changes`, counted by the change's own step), the opening step wrote the counts it read on the
-- challenge (`user_changes`, '<status>:<number>'). A user written before the counts existed has none (0).

-- `opened` the challenge's `user_changes`, `status_now` and `phone_now` the user's counts (nil: none yet).
-- Returns status_moved, phone_moved; nil when the challenge has no counts (opened before they existed: the
-- caller keeps the rule it was opened under, decision 0054's times).
local function changes_since(opened, status_now, phone_now)
  local status_then, phone_then = string.match(opened or '', '^(%d+):(%d+)$')
  if not status_then then
    return nil
  end
  return (tonumber(status_now or '0') or 0) > tonumber(status_then),
         (tonumber(phone_now or '0') or 0) > tonumber(phone_then)
end

-- The same, with a challenge opened before the counts existed kept to the rule it was opened under: the
-- user's last change of status, and of number, after the challenge's creation (decision 0054's times).
-- `opened` and `created_at` the challenge's `user_changes` and `created_at`; the user's two counts, then its
-- `status_changed_at` and `phone_changed_at`, as read (nil: none).
local function moved_since(opened, created_at, status_now, phone_now, status_at, phone_at)
  local status_moved, phone_moved = changes_since(opened, status_now, phone_now)
  if status_moved == nil then
    local created = tonumber(created_at or '0') or 0
    status_moved = (tonumber(status_at or '0') or 0) > created
    phone_moved = (tonumber(phone_at or '0') or 0) > created
  end
  return status_moved, phone_moved
end

-- A request id's record among the user's applied ones (`changes:<user>`, decision 0010): the request's
-- fingerprint, and for a change of status or number the user's counts right after its step,
-- '<fingerprint>@<status>:<number>', so that a retry voids only what was opened before that change.
-- `seen` the record (nil or false: none). Returns its fingerprint and its counts ('' none: an unblock's, or
-- one recorded before the counts were).
local function applied(seen)
  local fingerprint, counts = string.match(seen or '', '^(.*)@(%d+:%d+)$')
  if fingerprint then
    return fingerprint, counts
  end
  return seen, ''
end
