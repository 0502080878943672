module whatsapp-relay/bench/loadgen

go 1.22
