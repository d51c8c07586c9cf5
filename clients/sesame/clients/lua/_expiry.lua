-- Expiries of keys named by a worker's instants (decision 0103), put in front of every script: Redis counts
-- an absolute expiry (PEXPIREAT, SET PXAT) on its own clock, and a worker's `at` read on a clock behind
-- Redis's by more than the key's lifetime was already past there: Redis deleted the key as it was written (a
-- caller's ceiling, a global one, a hold, a request id's claim), and the limit it kept was gone. The
-- lifetime is measured on the worker's clock, from its `now`, and given to Redis as a duration: whatever the
-- two clocks say, the key lives as long as the worker meant.

-- Expire `key` at the worker's instant `at` (unix ms), the worker reading `now`: in `at - now` ms (1 at least).
local function expire_at(key, at, now)
  redis.call('PEXPIRE', key, math.max(1, math.floor(tonumber(at) - tonumber(now))))
end

-- The lifetime to give a key written now that must last until the worker's instant `at` (SET ... PX).
local function lifetime_to(at, now)
  return math.max(1, math.floor(tonumber(at) - tonumber(now)))
end
