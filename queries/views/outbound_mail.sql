-- The outbound rows of mail_judged: what the drill-down queries read (the detections read
-- the same rows summed in mail_rollup).
SELECT * FROM mail_judged WHERE direction = 'outbound'
