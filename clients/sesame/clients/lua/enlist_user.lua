-- Add a user to its client company's index, unless the client terminated the service.
-- KEYS[1] client hash, KEYS[2] the client's users (set; the same slot: the client id's shard)
-- ARGV[1] client id, ARGV[2] user id, ARGV[3] time (unix ms)
-- Returns 1, or 0 when the client is terminated.
local client, users = KEYS[1], KEYS[2]
local status = redis.call('HGET', client, 'status')
if status == 'terminated' then
  return 0
end
if not status then
  redis.call('HSET', client, 'client_id', ARGV[1], 'status', 'active', 'created_at', ARGV[3])
end
redis.call('SADD', users, ARGV[2])
return 1
