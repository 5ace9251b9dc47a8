-- setpoint's throttle: a token bucket kept in Redis, shared by every replica of a service.
--
-- setpoint writes a service's limit; the service (or its sidecar or middleware) runs this
-- script before each request and serves the request only when it answers "admitted". One
-- round trip per request, atomic (Redis runs one script at a time), and the same bucket for
-- every replica, however many there are.
--
-- Call it by its SHA1 (SCRIPT LOAD it once, or EVAL it once; load it again on NOSCRIPT, as
-- Redis empties its script cache on restart and failover):
--
--   EVALSHA <sha1> 1 setpoint:throttle:<service> [cost]
--
-- KEYS[1]  the service's limit, a hash that setpoint writes:
--            rate           requests per second admitted in the long run (a number > 0)
--            burst          the most requests admitted at once, the bucket's size (>= 1)
--            expires_at_ms  when the limit stops applying, Unix time in milliseconds: a
--                           setpoint that dies does not throttle the service for ever
--            set_by, set_at, expires_at   who set it and when, for people
--          and the bucket's own state, which this script keeps in the same hash (one key per
--          service, so that it also works on Redis Cluster):
--            tokens, ts_ms
-- ARGV[1]  what the request costs, in tokens (default 1)
--
-- Returns {admitted, limited, tokens}: admitted 1 or 0; limited 1 when a limit is in force
-- (0: no limit, an expired one, or one that is not well formed, all of which admit); tokens
-- left in the bucket, as text ("" when not limited).
--
-- What happens when Redis cannot be reached is the caller's choice, not this script's: failing
-- open (admit) keeps a Redis outage from becoming a service outage; failing closed keeps the
-- limit during one. setpoint's own client (`ThrottleGate`) makes it a setting, open by default.

-- Redis before 5 replicates scripts verbatim and then refuses writes after TIME; later versions
-- replicate effects and ignore this.
if redis.replicate_commands then
  redis.replicate_commands()
end

local limit = redis.call('HMGET', KEYS[1], 'rate', 'burst', 'expires_at_ms', 'tokens', 'ts_ms')
local rate = tonumber(limit[1])
local burst = tonumber(limit[2])
local expires_at = tonumber(limit[3])

-- The server's clock, the same for every replica of the service.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

if not rate or not burst or not expires_at
  or rate ~= rate or burst ~= burst -- NaN
  or rate <= 0 or burst < 1 or now >= expires_at then
  return {1, 0, ''}
end

local cost = tonumber(ARGV[1]) or 1
local tokens = tonumber(limit[4])
local ts = tonumber(limit[5])
if not tokens or not ts then
  -- A new limit starts with a full bucket.
  tokens = burst
  ts = now
end
if now > ts then
  tokens = tokens + (now - ts) * rate / 1000
  ts = now
end
-- The burst may have been lowered since the bucket was last filled.
if tokens > burst then
  tokens = burst
end

local admitted = 0
if tokens >= cost then
  tokens = tokens - cost
  admitted = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts_ms', string.format('%d', ts))
return {admitted, 1, string.format('%.3f', tokens)}
