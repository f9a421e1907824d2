-- GET /v1/journeys/{id}: ids drawn at random from BENCH_IDS (one a line), key BENCH_KEY.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local common = require("common")
local ids = {}
local headers = {["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")}
init = function(args)
  common.seed()
  for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
end
request = function()
  return wrk.format("GET", "/v1/journeys/" .. ids[math.random(#ids)], headers)
end
done = common.done
