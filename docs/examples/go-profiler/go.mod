module example.com/go-profiler

go 1.19
