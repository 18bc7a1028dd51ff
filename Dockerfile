# One image for every node; the mode follows from the environment (see cluster.config.ts).
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev
COPY . .
ENV IM_PORT=9001 IM_DATA_DIR=/data
EXPOSE 9001
# node directly (not npm start): the shell would not forward SIGTERM, and graceful shutdown needs it.
CMD ["node", "--import", "tsx", "main.ts"]
