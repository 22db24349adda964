"""Conversations: their lifecycle, storage and the retention rules that archive and delete them."""
