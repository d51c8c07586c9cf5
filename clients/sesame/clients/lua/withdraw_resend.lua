#!lua flags=allow-oom
-- Runs out of memory (decision 0111): it gives back what a refused step took.
-- Undo a resend whose other send units were refused (decision 0046): record_resend.lua took the resend, the
-- user's unit and queued the SMS while take_send_units.lua, sent with it, refused the number's, caller's or
-- global unit. The resend is given back (its count, and its last send time as it was), the user's unit too
-- (the member named by the resend's hold, decision 0101: found once, so that its SMS's entry, dropped later
-- by the dispatcher, gives back nothing more; a unit taken before 0101 is not found), and the undoing is
-- journaled; the queued SMS is dropped by the dispatcher (its hold is withdrawn). Only when the challenge's
-- last send is still this resend's: a later one is left as it is (the dropped SMS's entry gives its unit back
-- then, _user_unit.lua).
-- KEYS[1] challenge hash, KEYS[2] challenge journal stream, KEYS[3] the user's send budget (its user's
-- {s:<n>} slot), KEYS[4] when given the request id's claim the resend wrote, given up either way (the call
-- that claimed it was refused: its retry takes a resend again, decision 0065); ARGV[1] the resend's time
-- (unix ms), ARGV[2] the last send before it (unix ms), ARGV[3] the resend's hold name (its user's unit's
-- member; '' none given back), ARGV[4 ..] journal field/value pairs.
-- Returns 'withdrawn' or 'kept'.
local challenge, journal, sends = KEYS[1], KEYS[2], KEYS[3]
if KEYS[4] then redis.call('DEL', KEYS[4]) end
local h = redis.call('HMGET', challenge, 'last_sent_at', 'resends', 'user_id', 'client_id', 'op_digest',
                     'attempts', 'status')
if h[1] ~= ARGV[1] or tonumber(h[2] or '0') < 1 then
  return 'kept'
end
local resends = redis.call('HINCRBY', challenge, 'resends', -1)
redis.call('HSET', challenge, 'last_sent_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('ZREM', sends, ARGV[3]) end
local entry = {}
for i = 4, #ARGV do entry[#entry + 1] = ARGV[i] end
for _, v in ipairs({'user_id', h[3], 'client_id', h[4], 'op_digest', h[5], 'outcome', 'withdrawn',
                    'attempts', h[6], 'status', h[7], 'resends', resends}) do
  entry[#entry + 1] = v
end
journal_append(journal, entry)
return 'withdrawn'
