-- Take a user back out of a client company's index, when its enrolment was refused because the id is
-- another client's user: a refused request leaves nothing (an outside audit: 1,000 refused enrolments under
-- new client ids left 2,000 keys for good, and made an unknown client terminable, terminated for ever).
-- The client's record goes with its last user: a client is made by its first enlisted user (enlist_user.lua).
-- KEYS[1] client hash, KEYS[2] the client's users (set; the same slot)
-- ARGV[1] user id
-- Returns 1 when the id was listed.
local client, users = KEYS[1], KEYS[2]
local removed = redis.call('SREM', users, ARGV[1])
if redis.call('SCARD', users) == 0 and redis.call('HGET', client, 'status') == 'active' then
  redis.call('DEL', client)
end
return removed
