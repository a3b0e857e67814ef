"""Monitoring: readers that sample the machine (GPUs through NVML) and return values; they store nothing."""
