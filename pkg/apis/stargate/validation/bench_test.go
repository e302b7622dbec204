package validation

import "testing"

// Hot-path micro-benchmarks: every create and update is validated.
//   go test -run '^$' -bench . -benchmem ./pkg/apis/stargate/validation

func BenchmarkValidateHardware(b *testing.B) {
	hw := validHardware()
	b.ReportAllocs()
	for b.Loop() {
		if errs := ValidateHardware(hw); len(errs) != 0 {
			b.Fatal(errs)
		}
	}
}

func BenchmarkValidateJob(b *testing.B) {
	job := validJob()
	b.ReportAllocs()
	for b.Loop() {
		if errs := ValidateJob(job); len(errs) != 0 {
			b.Fatal(errs)
		}
	}
}
