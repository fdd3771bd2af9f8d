module pgofleet/test/goclient

go 1.19
