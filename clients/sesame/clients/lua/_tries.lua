-- An outbox entry's failed try (record_failed_try.lua for a code, record_failed_notice.lua for a notice;
-- decisions 0033 and 0041): how many times it was handed out, and whether it is given up.

-- The times the entry was delivered to a dispatcher (XPENDING's count; 1 when it is no longer pending).
local function tries_of(outbox, group, entry_id)
  local pending = redis.call('XPENDING', outbox, group, entry_id, entry_id, 1)
  if pending[1] then return tonumber(pending[1][4]) end
  return 1
end

-- Failures after which the provider may have taken the message (dispatching.UNCONFIRMED, decision 0096).
local UNCONFIRMED = {timeout = true, lost = true, partial = true}

-- Why the entry is dead-lettered, or nil to try again (dispatching.given_up). It is given up when its code or
-- notice is too old (`failure` 'expired', or `expired`), when no try is allowed any more (allowed = 0: every
-- provider gave its final word) or once its tries reach allowed; then the reason is 'unconfirmed' if this
-- try or an earlier one (`earlier`, decision 0097) may have reached the phone, else 'expired', the provider's
-- final word, or 'max_tries'.
local function given_up(failure, expired, allowed, tries, earlier)
  expired = failure == 'expired' or expired
  if not (expired or allowed == 0 or tries >= allowed) then return nil end
  if earlier or UNCONFIRMED[failure] then return 'unconfirmed' end
  if expired then return 'expired' end
  if allowed == 0 then return failure end
  return 'max_tries'
end
