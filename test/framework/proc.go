package framework

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat
// (100 on Linux for every architecture Go supports).
const clockTicks = 100

// CPUSeconds is the user+system CPU time a process has used so far.
func CPUSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / clockTicks
}

// RSSMiB is a process's resident set now.
func RSSMiB(pid int) float64 { return statusKiB(pid, "VmRSS:") / 1024 }

// PeakMiB is the high-water mark of a process's resident set.
func PeakMiB(pid int) float64 { return statusKiB(pid, "VmHWM:") / 1024 }

func statusKiB(pid int, key string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

// Machine describes this machine for reports.
func Machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(line[strings.IndexByte(line, ':')+1:])
				break
			}
		}
	}
	mem := statusLine("/proc/meminfo", "MemTotal:")
	return fmt.Sprintf("%s; %d logical CPUs (GOMAXPROCS); %s RAM", model, runtime.GOMAXPROCS(0), mem)
}

func statusLine(file, key string) string {
	data, _ := os.ReadFile(file)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kib, _ := strconv.ParseFloat(f[1], 64)
				return fmt.Sprintf("%.1f GiB", kib/1024/1024)
			}
		}
	}
	return "?"
}
