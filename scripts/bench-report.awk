# Turns `go test -bench -v` output into a report: each result with its time
# per operation and, within one benchmark, its speed-up over the sub-benchmark
# whose name ends in "_baseline". All figures come from the same run.
/^BenchmarkTopProviders|^Benchmark/ && / ns\/op/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  ns = 0
  for (i = 2; i < NF; i++) if ($(i+1) == "ns/op") ns = $i
  parent = name; sub(/\/.*/, "", parent)
  order[++n] = name; nsop[name] = ns; par[name] = parent
  if (name ~ /_baseline$/) base[parent] = ns
  next
}
/bench_test.go:[0-9]+: / { sub(/^[ \t]+/, ""); notes[++m] = $0; next }
END {
  printf "%-62s %16s %12s\n", "benchmark", "time/op", "speed-up"
  for (i = 1; i <= n; i++) {
    name = order[i]; ns = nsop[name]
    if (ns >= 1e6) t = sprintf("%.1f ms", ns / 1e6)
    else if (ns >= 1e3) t = sprintf("%.1f µs", ns / 1e3)
    else t = sprintf("%.1f ns", ns)
    r = (par[name] in base && ns > 0) ? sprintf("%.0fx", base[par[name]] / ns) : ""
    printf "%-62s %16s %12s\n", name, t, r
  }
  for (i = 1; i <= m; i++) print "note: " notes[i]
}
