-- POST /v1/journeys: one registration (a fresh pilgrim) a request, key BENCH_KEY.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local headers = {["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"), ["Content-Type"] = "application/json"}
init = function(args) common.seed() end
request = function()
  local body = '{"occurred_at": "' .. common.now() .. '", "pilgrim_id": "' .. common.uuid4() ..
    '", "season": 1446, "country": "IDN"}'
  return wrk.format("POST", "/v1/journeys", headers, body)
end
done = common.done
