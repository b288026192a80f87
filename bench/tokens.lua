-- wrk script for bench/run: cycle through the tokens of a file, one per line,
-- a different one on every request (in file order, then again from the top).
--   wrk -t1 -c32 -d5s --latency -s bench/tokens.lua URL -- TOKENS_FILE [START]
-- START (default 0): how many tokens to skip first, so that successive runs
-- can go on where the last one stopped (the warm-up of bench/run).

local headers = {}
local tokens, n, i = {}, 0, 0

function init(args)
    local f = assert(io.open(args[1], "r"))
    for line in f:lines() do
        if #line > 0 then
            n = n + 1
            tokens[n] = "Bearer " .. line
        end
    end
    f:close()
    assert(n > 0, "no tokens in " .. args[1])
    i = (tonumber(args[2]) or 0) % n
    for k, v in pairs(wrk.headers) do
        headers[k] = v
    end
end

function request()
    i = i + 1
    if i > n then
        i = 1
    end
    headers["Authorization"] = tokens[i]
    return wrk.format(nil, nil, headers)
end
