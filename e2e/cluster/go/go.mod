module sessionstore.local/clustertools

go 1.24.0
