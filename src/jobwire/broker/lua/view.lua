-- A consistent read: the newest event id (the head) and the state of each job, together.
-- KEYS: 1 global stream, 2 a job set to read ('' or none = only the job ids in ARGV)
-- ARGV: 1 job key prefix, 2.. job ids
local head = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local out = {head[1] and head[1][1] or '0-0'}
local ids = {}
if KEYS[2] ~= nil and KEYS[2] ~= '' then
  ids = redis.call('SMEMBERS', KEYS[2])
else
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
end
for _, job in ipairs(ids) do
  local r = redis.call('HMGET', ARGV[1] .. job, 's', 'id')
  if r[1] then
    out[#out + 1] = job
    out[#out + 1] = r[1]
    out[#out + 1] = r[2]
  end
end
return out
