# wrk helpers for bench/run, sourced; also by t/harness/02-bench-warm-up.t.
# They call the caller's progress and die, and read $bench (this directory).

# wrk's output -> "rps p50_us p99_us requests non2xx socket_errors"
parse_wrk() {
    awk '
        function us(v,   n, u) {
            n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
            if (u == "us") return n
            if (u == "ms") return n * 1000
            if (u == "s")  return n * 1000000
            if (u == "m")  return n * 60000000
            if (u == "h")  return n * 3600000000
            return -1
        }
        /Requests\/sec:/                 { rps = $2 }
        /^ *50% /                        { p50 = us($2) }
        /^ *99% /                        { p99 = us($2) }
        / requests in /                  { reqs = $1 }
        /Non-2xx or 3xx responses:/      { bad = $NF }
        /Socket errors:/                 { n = split($0, f, /[^0-9]+/)
                                           for (i = 1; i <= n; i++) err += f[i] }
        END { printf "%s %s %s %d %d %d\n", rps + 0, p50 + 0, p99 + 0, reqs, bad, err }
    ' "$1"
}

# warm_up URL TOKENS_FILE N SECS MAX_RUNS OUT SEEN
# wrk runs of SECS s (bench/tokens.lua, 32 connections), each going on in
# TOKENS_FILE where the last one stopped, until the command SEEN prints a
# number >= N: how many distinct tokens the server has seen (bench/run
# counts Redis GETs, one per first sight).  So a slow or busy machine takes
# more runs instead of giving up; after MAX_RUNS runs it dies, saying how
# far it got.  Any non-2xx answer dies.  Sets warm_runs and warm_reqs (the
# requests answered); the last run's wrk output is in OUT.
warm_up() {
    local url=$1 file=$2 n=$3 secs=$4 max=$5 out=$6 seen=$7 have
    warm_runs=0 warm_reqs=0
    while have=$("$seen") && [ "$have" -lt "$n" ]; do
        [ "$warm_runs" -lt "$max" ] ||
            die "warm-up: $have of $n tokens seen after $warm_runs wrk runs of $secs s" \
                "($warm_reqs requests answered): too slow or too busy a machine;" \
                "BENCH_WARM_RUNS=N allows more runs, BENCH_QUICK=1 skips this part"
        warm_runs=$((warm_runs + 1))
        [ "$warm_runs" = 1 ] ||
            progress "warm-up: $have of $n tokens seen, wrk run $warm_runs of at most $max"
        wrk -t1 -c32 -d"${secs}s" -s "$bench/tokens.lua" "$url" -- "$file" "$warm_reqs" \
            > "$out" 2>&1 || die "wrk failed: $(cat "$out")"
        set -- $(parse_wrk "$out")
        [ "$5" = 0 ] || die "warm-up: $5 non-2xx responses"
        [ "$4" -gt 0 ] || die "warm-up: a wrk run of $secs s got no answer"
        warm_reqs=$((warm_reqs + $4))
    done
    [ -n "$have" ] || die "warm-up: $seen printed nothing"
}
