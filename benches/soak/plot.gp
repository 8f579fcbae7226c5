# gnuplot -e "in='samples.csv'; outdir='dir'" plot.gp: one PNG per series of benches/soak.sh.
set datafile separator ","
set terminal pngcairo size 900,360 noenhanced
set key top left
set grid
set xlabel "minutes"
set yrange [0:*]
plot_one(col, title, unit, file) = sprintf("set output '%s/%s.png'; set title '%s'; set ylabel '%s'; plot in using ($1/60):%d with lines lw 2 title '%s'", outdir, file, title, unit, col, title)
eval plot_one(2, "RSS", "MB", "rss")
eval plot_one(3, "open file descriptors", "fds", "fds")
eval plot_one(4, "CPU (one core = 100)", "%", "cpu")
set output outdir."/latency.png"
set title "decision latency over each 10 s (bucket upper bounds)"
set ylabel "ms"
set logscale y
set yrange [0.005:*]
plot in using ($1/60):5 with lines lw 2 title "p50", in using ($1/60):6 with lines lw 2 title "p99"
unset logscale y
set yrange [0:*]
eval plot_one(7, "transactions held", "transactions", "transactions")
set output outdir."/calls.png"
set title "calls answered per second"
set ylabel "calls/s"
plot in using ($1/60):($8/10) with lines lw 2 title "calls/s"
eval plot_one(9, "Redis used_memory", "MB", "redis")
