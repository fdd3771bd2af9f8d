module pgofleet.test/pgoprog

go 1.21
